"""Liveness, readiness and the store breaker.

Under concurrent searches over loopback, the standalone Milvus Lite server is killed and started again: while it
is away, searches get 503 with ``Retry-After`` (none hangs for the store's timeout), ``/health`` answers, ``/ready``
says why; once it is back, searches answer again with the same results. During a slow encoder load the port
answers: ``/health`` says ``loading``, ``/ready`` and the API 503 with the reason, until it is loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import rag.server.service as service_module
from connectors.milvus import StoreUnavailableError
from rag.server import create_app
from rag.server.breaker import Breaker, StoreOutageError, StoreState
from rag.settings import Settings
from tests.milvus_server import MilvusLiteServer
from tests.retrieval.corpus import COLLECTION, LIGHTHOUSE, build

from .conftest import serve_in_thread

CLIENTS = 4


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MilvusLiteServer]:
    server = MilvusLiteServer(tmp_path / "server-data").start()
    yield server
    server.stop()


def _wait_for(check: Any, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the server did not get there in time"
        time.sleep(0.1)


def _store(client: httpx.Client) -> str:
    return client.get("/health").json()["store"]


@pytest.mark.slow
def test_searches_fail_fast_while_the_store_is_away_and_recover(
    own_server: MilvusLiteServer, tmp_path: Path, tiny_base, caplog: pytest.LogCaptureFixture
) -> None:
    build(tmp_path / "corpus", tiny_base, db=own_server.uri)
    # A long store timeout: a search that waited for the store would hang far past the clients' own timeout.
    settings = Settings(
        milvus_uri=own_server.uri, collection=COLLECTION, data_dir=tmp_path / "data", milvus_timeout=120
    )
    form = {"text": LIGHTHOUSE, "top_k": "5"}
    # (phase, status, Retry-After): a reply counts in the phase its request was sent in, except that one sent
    # while the store was up and answered after the kill began counts as "going" (it may have met either)
    replies: list[tuple[str, int, str | None]] = []
    phase = ["up"]
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=60.0) as client:
            while not stop.is_set():
                sent = phase[0]
                reply = client.post("/api/search", data=form)
                counted = "going" if sent == "up" and phase[0] != "up" else sent
                replies.append((counted, reply.status_code, reply.headers.get("retry-after")))
                time.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="rag.server"), serve_in_thread(settings, tiny_base) as url:
        with httpx.Client(base_url=url, timeout=60.0) as client:
            before = client.post("/api/search", data=form).json()["results"]
            assert before and client.get("/ready").json() == {"status": "ready"}
            workers = [threading.Thread(target=load) for _ in range(CLIENTS)]
            for worker in workers:
                worker.start()
            _wait_for(lambda: len(replies) >= CLIENTS)

            phase[0] = "going"
            own_server.kill()
            _wait_for(lambda: _store(client) == "unavailable")  # the probe saw it, within a few seconds
            phase[0] = "away"
            count = len(replies)
            _wait_for(lambda: len(replies) >= count + 3 * CLIENTS)  # every client was answered, more than once
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["message"] == "the Milvus store cannot be reached"

            phase[0] = "returning"  # replies from here to readiness may be either
            own_server.start()  # the same folder and port
            _wait_for(lambda: client.get("/ready").status_code == 200)
            phase[0] = "back"
            count = len(replies)
            _wait_for(lambda: len(replies) >= count + 2 * CLIENTS)
            stop.set()
            for worker in workers:
                worker.join(timeout=60)
            after = client.post("/api/search", data=form).json()["results"]

    assert [r["id"] for r in after] == [r["id"] for r in before]
    statuses = {p: [status for q, status, _ in replies if q == p] for p in ("up", "going", "away", "returning", "back")}
    assert set(statuses["up"]) == {200}
    assert statuses["away"] and set(statuses["away"]) == {503}
    assert all(after == "2" for p, status, after in replies if p == "away")  # Retry-After: the probe's period
    assert statuses["back"][-CLIENTS:] == [200] * CLIENTS
    assert set(statuses["going"]) <= {200, 503} and set(statuses["returning"]) <= {200, 503}
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "rag.server.breaker"]
    assert any(level == "ERROR" and "stopped answering" in message for level, message in logged)
    assert any(level == "WARNING" and "answers again" in message for level, message in logged)


def test_the_port_answers_while_the_encoder_loads(settings: Settings, tiny_base, monkeypatch) -> None:
    loading = threading.Event()
    release = threading.Event()

    def slow_load(*args: Any, **kwargs: Any) -> Any:
        loading.set()
        release.wait(60)
        return tiny_base

    monkeypatch.setattr(service_module, "load_encoder", slow_load)
    with TestClient(create_app(settings)) as client:  # no encoder given: it loads in the background
        assert loading.wait(60)
        assert client.get("/health").json() == {"status": "loading", "store": "unknown"}
        not_ready = client.get("/ready")
        assert not_ready.status_code == 503 and not_ready.headers["retry-after"] == "5"
        assert not_ready.json()["error"] == "not_ready" and "loading the encoder" in not_ready.json()["message"]
        search = client.post("/api/search", data={"text": "x"})
        assert search.status_code == 503 and search.json()["error"] == "not_ready"
        assert client.get("/").status_code == 200  # the page too
        release.set()
        _wait_for(lambda: client.get("/ready").status_code == 200)
        assert client.get("/health").json()["status"] == "ok"
        assert client.post("/api/search", data={"text": "x"}).status_code == 200


def test_a_start_that_fails_is_reported_and_ends_the_wait(settings: Settings, monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no weights at /nowhere.pth")

    monkeypatch.setattr(service_module, "load_encoder", broken)
    failures: list[BaseException] = []
    app = create_app(settings)
    app.state.on_startup_failure = failures.append
    with TestClient(app) as client:
        _wait_for(lambda: client.get("/health").json()["status"] == "failed")
        reply = client.get("/ready")
        assert reply.status_code == 503 and "no weights at /nowhere.pth" in reply.json()["message"]
    assert [str(e) for e in failures] == ["no weights at /nowhere.pth"]


def test_the_breaker_opens_on_a_failure_and_closes_on_an_answer(caplog: pytest.LogCaptureFixture) -> None:
    changes: list[StoreState] = []
    breaker = Breaker("http://db:19530", interval=3, on_change=changes.append)
    calls: list[str] = []

    class Store:
        def search(self) -> str:
            calls.append("search")
            raise StoreUnavailableError("the Milvus store at http://db:19530 cannot be reached", "http://db:19530")

        def count(self) -> int:
            calls.append("count")
            return 7

    store = breaker.wrap(Store())
    breaker.answered()
    assert store.count() == 7
    with caplog.at_level(logging.WARNING, logger="rag.server.breaker"):
        with pytest.raises(StoreUnavailableError):
            store.search()
        with pytest.raises(StoreOutageError) as refused:
            store.count()  # fails at once: the store is not called
        assert refused.value.retry_after == 3 and "http://db:19530" not in refused.value.public
        breaker.failed(StoreUnavailableError("again", "http://db:19530"))  # logged once per outage
        breaker.answered()
    assert store.count() == 7
    assert calls == ["count", "search", "count"]
    assert changes == [StoreState.OK, StoreState.UNAVAILABLE, StoreState.OK]
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]
