"""The server over the known retrieval corpus (tiny parity encoder, Milvus Lite in a temporary folder).

``client`` drives the app in-process (FastAPI's TestClient); ``live_server`` runs it with uvicorn
on 127.0.0.1 at a free port, in a thread that stops when the session ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi.testclient import TestClient

from rag.embeddings.base import Encoder
from rag.server import create_app
from rag.settings import Settings
from tests.retrieval.corpus import COLLECTION, Corpus, build


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> Corpus:
    return build(tmp_path_factory.mktemp("server"), tiny_base)


@pytest.fixture(scope="session")
def settings(corpus: Corpus) -> Settings:
    return Settings(milvus_uri=corpus.db, collection=COLLECTION, data_dir=corpus.root / "data")


@pytest.fixture(scope="module")
def client(settings: Settings, tiny_base) -> Iterator[TestClient]:
    with TestClient(create_app(settings, encoder=tiny_base)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def live_server(settings: Settings, tiny_base) -> Iterator[str]:
    """The base URL of the app served by uvicorn on a free loopback port."""
    with serve_in_thread(settings, tiny_base) as url:
        yield url


@contextmanager
def serve_in_thread(settings: Settings, encoder: Encoder) -> Iterator[str]:
    """Serve the app for ``settings`` with uvicorn on a free 127.0.0.1 port; yields its base URL, stops on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings, encoder=encoder), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
