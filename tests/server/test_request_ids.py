"""Request ids: one per request, the client's when safe, in the ``X-Request-ID`` reply header, in every JSON error
reply, and on every log line of the request, the access line (with its latency) included, as text and as JSON."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.milvus import StoreUnavailableError
from rag.access.tokens import Scope, TokenStore
from rag.server import Service, create_app
from rag.server.logs import prepare
from rag.settings import Settings

SECRET = "s3cret-token"
ADMIN = {"Authorization": f"Bearer {SECRET}"}


class Lines:
    """What the ``rag`` loggers write, through handlers formatted as ``serve`` formats them (text and JSON)."""

    def __init__(self) -> None:
        self.text, self.json = io.StringIO(), io.StringIO()

    def texts(self) -> list[str]:
        return self.text.getvalue().splitlines()

    def objects(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json.getvalue().splitlines()]


@pytest.fixture
def lines() -> Iterator[Lines]:
    logger = logging.getLogger("rag")
    captured = Lines()
    handlers = [logging.StreamHandler(captured.text), logging.StreamHandler(captured.json)]
    prepare(handlers[0], "text")
    prepare(handlers[1], "json")
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield captured
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def client(settings: Settings, tiny_base, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app with a server token and a stored read-only token; server errors are answered, not raised."""
    data_dir = tmp_path_factory.mktemp("request-ids")
    changed = Settings(**{**settings.model_dump(), "data_dir": data_dir, "server_token": SECRET})
    with TestClient(create_app(changed, encoder=tiny_base), raise_server_exceptions=False) as test_client:
        test_client.reader = {"Authorization": f"Bearer {TokenStore(data_dir).add('reader', Scope.READ)[1]}"}  # type: ignore[attr-defined]
        yield test_client


def _replied(response: Any, status: int) -> str:
    """The request id of an error reply, which its body and its header both carry."""
    assert response.status_code == status, response.text
    request_id = response.headers["X-Request-ID"]
    assert response.json()["request_id"] == request_id
    return request_id


def test_every_reply_has_an_id_and_the_access_line_carries_it_with_the_latency(
    client: TestClient, lines: Lines
) -> None:
    kept = client.get("/health", headers={"X-Request-ID": "lb-7f3a.1:2"})
    assert kept.status_code == 200 and kept.headers["X-Request-ID"] == "lb-7f3a.1:2"
    made = client.post("/api/search", data={"text": "a lighthouse"}, headers=ADMIN)
    assert made.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])

    access = [line for line in lines.texts() if " rag.server.access: " in line]
    assert re.search(r'"GET /health HTTP/1.1" 200 \d+\.\d ms request_id=lb-7f3a\.1:2$', access[0]), access
    made_id = made.headers["X-Request-ID"]
    assert re.search(rf'"POST /api/search HTTP/1.1" 200 [\d.]+ ms request_id={made_id}$', access[1]), access
    health, search = [line for line in lines.objects() if line["logger"] == "rag.server.access"]
    assert (health["request_id"], health["method"], health["path"], health["status"]) == (
        "lb-7f3a.1:2", "GET", "/health", 200,
    )  # fmt: skip
    assert search["request_id"] == made.headers["X-Request-ID"] and search["status"] == 200
    assert isinstance(search["latency_ms"], float) and search["latency_ms"] > 0
    assert {"time", "level", "message", "client"} <= search.keys()


def test_a_hostile_or_oversized_id_is_replaced(client: TestClient, lines: Lines) -> None:
    for hostile in ("a b", "x" * 65, '"><script>', "-leading-dash", "id\tforged=1", "é"):
        response = client.get("/health", headers={"X-Request-ID": hostile.encode("utf-8")})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"]), hostile
    assert all(line.count("request_id=") == 1 for line in lines.texts())
    encoded = client.get("/no/such%0Aline")  # a decoded line break in the path cannot start a log line
    assert encoded.status_code == 404 and len(lines.texts()) == 7 and "/no/such%0Aline" in lines.texts()[-1]


def test_error_replies_carry_the_id_and_so_do_their_log_lines(
    client: TestClient, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    invalid = _replied(client.post("/api/search", json={"text": "x", "top_k": "many"}, headers=ADMIN), 422)
    assert _replied(client.post("/api/search", json={"text": "x"}), 401) != invalid  # no token
    _replied(client.post("/api/ingest", files={"files": ("a.md", b"# a")}, headers=client.reader), 403)  # type: ignore[attr-defined]
    cross_site = {**ADMIN, "Origin": "http://evil.example", "X-Request-ID": "proxy-1"}
    assert _replied(client.post("/api/ingest", files={"files": ("a.md", b"# a")}, headers=cross_site), 403) == "proxy-1"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(Service, "search", broken)
    crashed = _replied(client.post("/api/search", json={"text": "x"}, headers=ADMIN), 500)
    failed = [line for line in lines.objects() if line["level"] == "ERROR" and "failed" in line["message"]]
    assert failed[0]["request_id"] == crashed and "RuntimeError: boom" in failed[0]["exception"]
    assert any(re.search(rf'"POST /api/search HTTP/1.1" 500 [\d.]+ ms request_id={crashed}$', x) for x in lines.texts())


def test_a_503_of_the_store_guard_carries_the_id(client: TestClient, tmp_path: Path) -> None:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    service.probe.close()  # the breaker stays as this test sets it
    service.breaker.failed(StoreUnavailableError("the store went away", service.settings.milvus_uri))
    try:
        response = client.post("/api/search", json={"text": "x"}, headers={**ADMIN, "X-Request-ID": "outage-1"})
        assert _replied(response, 503) == "outage-1" and response.headers["Retry-After"]
        ready = client.get("/ready", headers={"X-Request-ID": "probe-9"})
        assert _replied(ready, 503) == "probe-9" and ready.json()["store"] == "unavailable"
    finally:
        service.breaker.answered()
