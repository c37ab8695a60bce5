"""`rag serve`: loopback by default, the token from RAG_SERVER_TOKEN or --token, the encoder from settings."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import rag.server.app as app_module
from rag.cli import app
from rag.server.app import is_loopback
from tests.helpers.models import use_tiny_model
from tests.retrieval.corpus import COLLECTION, Corpus


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    """What `rag serve` hands to uvicorn, instead of serving."""
    calls: list[tuple[Any, dict[str, Any]]] = []
    binds: list[tuple[str, int]] = []

    def run(server: uvicorn.Server, sockets: list[socket.socket]) -> None:
        calls.append((server.config.app, {"host": server.config.host, "port": server.config.port}))
        assert binds[-1] == (server.config.host, server.config.port) and sockets[0].fileno() != -1

    real_bind = app_module.bind

    def bind(host: str, port: int) -> socket.socket:  # a free port stands in: the tests ask for 8000 and 9123
        binds.append((host, port))
        return real_bind("127.0.0.1", 0)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(app_module, "bind", bind)
    use_tiny_model(monkeypatch)
    return calls


def ready(client: TestClient) -> TestClient:
    """``client`` once its app has loaded the encoder in the background and the store answered (``/ready``)."""
    deadline = time.monotonic() + 60
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/ready").text
        time.sleep(0.05)
    return client


def test_serve_binds_loopback_and_asks_for_the_env_token(
    started: list, corpus: Corpus, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_SERVER_TOKEN", "from-the-env")
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--collection", COLLECTION, "--uri", corpus.db])
    assert result.exit_code == 0, result.output
    [(asgi, options)] = started
    assert (options["host"], options["port"]) == ("127.0.0.1", 8000)
    with TestClient(asgi, base_url="http://127.0.0.1:8000") as client:  # the Host a client of 127.0.0.1 sends
        ready(client)
        assert client.get("/api/stats").status_code == 401
        assert client.get("/health", headers={"Host": "evil.example:8000"}).status_code == 400  # DNS rebinding
        stats = client.get("/api/stats", headers={"Authorization": "Bearer from-the-env"}).json()
    assert (stats["collection"], stats["count"]) == (COLLECTION, len(corpus.items))


def test_an_open_bind_without_a_token_generates_one_and_requires_it(
    started: list, corpus: Corpus, caplog: pytest.LogCaptureFixture, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path))
    args = ["serve", "--collection", COLLECTION, "--uri", corpus.db, "--host", "0.0.0.0", "--port", "9123"]
    with caplog.at_level(logging.WARNING, logger="rag.server"):
        assert CliRunner().invoke(app, args).exit_code == 0
        assert CliRunner().invoke(app, [*args, "--token", "t"]).exit_code == 0
    assert [(kwargs["host"], kwargs["port"]) for _, kwargs in started] == [("0.0.0.0", 9123)] * 2
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "a token is needed" in warning and "this run only" in warning
    url = warning.splitlines()[-1].strip()
    assert url.startswith("http://0.0.0.0:") and "#token=" in url
    token = url.split("#token=")[1]
    with TestClient(started[0][0]) as client:
        ready(client)
        assert client.get("/api/stats").status_code == 401
        assert client.get("/api/stats", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/api/tokens", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with TestClient(started[1][0]) as client:  # --token given: that one, no other
        ready(client)
        assert client.get("/api/stats", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert client.get("/api/stats", headers={"Authorization": "Bearer t"}).status_code == 200


def test_an_open_bind_with_stored_tokens_or_no_auth_generates_none(
    started: list, corpus: Corpus, caplog: pytest.LogCaptureFixture, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.access import TokenStore

    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path))
    args = ["serve", "--collection", COLLECTION, "--uri", corpus.db, "--host", "0.0.0.0"]
    with caplog.at_level(logging.WARNING, logger="rag.server"):
        assert CliRunner().invoke(app, [*args, "--no-auth"]).exit_code == 0
        _, reader = TokenStore(tmp_path).add("reader", "read")
        assert CliRunner().invoke(app, args).exit_code == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["serving on 0.0.0.0 with --no-auth: anyone who can reach it can read, add and delete items"]
    with TestClient(started[0][0]) as client:
        ready(client)
        assert client.get("/api/stats").status_code == 200
    with TestClient(started[1][0]) as client:
        ready(client)
        assert client.get("/api/stats").status_code == 401
        assert client.get("/api/stats", headers={"Authorization": f"Bearer {reader}"}).status_code == 200


def test_loopback_addresses() -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.8.0.1", "::1", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"))


def test_serve_opens_only_an_existing_collection_and_shows_paths_on_request(started: list, corpus: Corpus) -> None:
    missing = CliRunner().invoke(app, ["serve", "--collection", "nope", "--uri", corpus.db])
    assert missing.exit_code == 2 and "there is no collection 'nope'" in missing.output and started == []
    args = ["serve", "--collection", COLLECTION, "--uri", corpus.db]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--show-paths"]).exit_code == 0
    uris = []
    for asgi, _ in started:
        with TestClient(asgi, base_url="http://localhost:8000") as client:
            uris.append(ready(client).get("/api/stats").json()["uri"])
    assert uris == [None, corpus.db]


def test_serve_on_a_busy_port_fails_before_loading_anything(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_app(settings: Any) -> None:
        raise AssertionError("the app (and its encoder) must not be built when the port is taken")

    monkeypatch.setattr(app_module, "create_app", no_app)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--collection", COLLECTION, "--uri", corpus.db, "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in " ".join(result.output.split())
