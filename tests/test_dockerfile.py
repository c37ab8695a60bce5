"""The Dockerfile and .dockerignore (no Docker engine here): CPU torch, a non-root user, data on a volume, a health
check on /health that works, `rag serve` on every interface, and a build context without secrets."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    text = "\n".join(lines).replace("\\\n", " ")
    parsed = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_torch_is_the_pinned_cpu_build() -> None:
    runs = [args for keyword, args in instructions() if keyword == "RUN"]
    torch = [args for args in runs if "torch" in args]
    assert any("torch==2.13.0" in args and "--index-url https://download.pytorch.org/whl/cpu" in args for args in torch)
    # whatever installs the project keeps that torch (an unpinned resolve could fetch the CUDA wheel from PyPI)
    project = [args for args in runs if "pip install" in args and ".[" in args]
    assert project and all("torch==2.13.0" in args for args in project)
    extras = project[0].split(".[", 1)[1].split("]", 1)[0].split(",")
    assert {"server", "llm"} <= set(extras)


def test_it_runs_as_a_user_other_than_root() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "no USER in the final stage: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_data_lives_on_a_volume_and_the_server_binds_every_interface() -> None:
    steps = final_stage()
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "RAG_DATA_DIR=/data" in env
    assert any(keyword == "VOLUME" and "/data" in args for keyword, args in steps)
    assert ("EXPOSE", "8000") in steps
    cmd = [args for keyword, args in steps if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["rag", "serve", "--host", "0.0.0.0"]


def healthcheck() -> list[str]:
    args = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"][-1]
    return json.loads(args.split("CMD", 1)[1])


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_asks_health_on_the_configured_port(
    health_server: http.server.HTTPServer, status: int, healthy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = healthcheck()
    assert command[0] == "python" and "/health" in command[-1] and "curl" not in " ".join(command)
    monkeypatch.setattr(_Health, "status", status)
    env = {**os.environ, "RAG_SERVER_PORT": str(health_server.server_address[1])}
    result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: a pattern matches the path or a folder above it, the
    last matching pattern wins, and ``!`` takes back in."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for pattern in patterns:
        glob = pattern.lstrip("!").rstrip("/").replace("**/", "*")
        if any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes):
            out = not pattern.startswith("!")
    return out


def test_the_build_context_holds_what_the_image_copies_and_no_secrets() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [shlex.split(args)[:-1] for keyword, args in instructions() if keyword == "COPY" and "--from" not in args]
    for sources in copied:
        for source in sources:
            assert not ignored(source.rstrip("/"), patterns), source
    assert not ignored("rag/server/static/index.html", patterns)
    for secret in (".env", ".venv/bin/python", "rag_data/milvus.db", "weights/Visualized_base_en_v1.5.pth", ".git"):
        assert ignored(secret, patterns), secret


def test_the_documented_systemd_unit_outlasts_the_drain() -> None:
    """docs/deploy.md's unit: a user, an environment file, restarts on failure, and a stop timeout longer than the
    drain its environment file (and the setting's default) gives SIGTERM."""
    from rag.settings import Settings

    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    unit = dict(
        line.split("=", 1) for line in text.split("```ini\n", 1)[1].split("```", 1)[0].splitlines() if "=" in line
    )
    assert unit["User"] and unit["User"] != "root"
    assert unit["EnvironmentFile"].startswith("/")
    assert unit["Restart"] == "on-failure"
    assert unit.get("KillMode", "control-group") == "control-group"  # the Lite server gets SIGTERM too
    drain = [line for line in text.splitlines() if line.startswith("RAG_SERVER_DRAIN_SECONDS=")]
    assert drain and float(drain[0].split("=")[1]) == Settings.model_fields["server_drain_seconds"].default
    assert float(unit["TimeoutStopSec"]) > float(drain[0].split("=")[1])
