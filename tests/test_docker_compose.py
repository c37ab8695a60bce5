"""docker-compose.yml stays a valid Milvus standalone definition with a `rag serve` service (no Docker engine needed):
pinned images, health checks, credentials from the environment, ports on loopback only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[1]
#: ${NAME}, ${NAME:-default}, ${NAME:?message}: compose's interpolation
VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def expand(value: str) -> str:
    """``value`` as compose reads it with none of its variables set (defaults applied; a required one fails)."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        assert kind != "?", f"{name} is required"
        return rest if kind == "-" else ""

    return VARIABLE.sub(one, value)


def test_every_service_is_pinned_and_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"etcd", "minio", "milvus", "rag"}
    for name, service in services.items():
        if "build" not in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), name
            assert service["healthcheck"]["test"], name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose["volumes"] or source.startswith("${"), volume


def test_milvus_and_minio_are_current_releases(compose: dict[str, Any]) -> None:
    services = compose["services"]
    milvus = services["milvus"]
    version = tuple(int(part) for part in milvus["image"].split(":v")[1].split("."))
    assert version[:2] == (2, 6) and version >= (2, 6, 25), milvus["image"]
    # the release Milvus 2.6's compose file moved to; RELEASE.2024-05-28 was replaced for security reasons
    assert services["minio"]["image"].endswith(":RELEASE.2024-12-18T13-15-44Z")
    assert "http://localhost:9091/healthz" in milvus["healthcheck"]["test"]
    assert all(dep["condition"] == "service_healthy" for dep in milvus["depends_on"].values())


def required(value: str) -> set[str]:
    """The variables compose refuses to start without in ``value`` (``${NAME:?message}``)."""
    return {name for name, kind, _ in VARIABLE.findall(value) if kind == "?"}


def test_minio_credentials_come_from_the_environment(compose: dict[str, Any]) -> None:
    minio = compose["services"]["minio"]["environment"]
    milvus = compose["services"]["milvus"]["environment"]
    assert "minioadmin" not in (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    # no default: compose stops with the message until both are set; Milvus logs in with the same two
    assert required(minio["MINIO_ROOT_USER"]) == required(milvus["MINIO_ACCESS_KEY_ID"]) == {"MINIO_ACCESS_KEY"}
    assert required(minio["MINIO_ROOT_PASSWORD"]) == required(milvus["MINIO_SECRET_ACCESS_KEY"]) == {"MINIO_SECRET_KEY"}


def test_published_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    published = [(name, port) for name, s in compose["services"].items() for port in s.get("ports", [])]
    assert {port for _, port in published} >= {"127.0.0.1:19530:19530", "127.0.0.1:9091:9091", "127.0.0.1:8000:8000"}
    for name, port in published:
        assert isinstance(port, str) and expand(port).startswith("127.0.0.1:"), (name, port)
        assert expand(port).count(":") == 2, (name, port)


def test_the_rag_service_serves_on_milvus_once_it_is_healthy(compose: dict[str, Any]) -> None:
    rag = compose["services"]["rag"]
    assert rag["build"] == "."
    assert rag["depends_on"] == {"milvus": {"condition": "service_healthy"}}
    env = rag["environment"]
    assert env["RAG_MILVUS_URI"] == "http://milvus:19530"
    assert env["RAG_DATA_DIR"] == "/data"
    mounts = {expand(v).split(":")[1]: v for v in rag["volumes"]}
    assert mounts["/data"].split(":")[0] in compose["volumes"]  # a named volume: survives `down`
    assert mounts["/models"].endswith(":ro")
    assert expand(env["RAG_WEIGHTS"]).startswith("/models/") and expand(env["RAG_TEXT_MODEL"]).startswith("/models/")
    # a token is passed through from the shell or .env, never written here
    assert env["RAG_SERVER_TOKEN"] is None
    # SIGTERM drains upload jobs: the grace period outlasts the drain
    grace = int(rag["stop_grace_period"].rstrip("s"))
    assert grace > float(env["RAG_SERVER_DRAIN_SECONDS"])
    assert rag["init"] is True


def test_plain_up_starts_the_store_alone(compose: dict[str, Any]) -> None:
    """`docker compose up -d` is still "a Milvus server" (README); the server is the `rag` profile's."""
    profiled = {name for name, s in compose["services"].items() if s.get("profiles")}
    assert profiled == {"rag"}
