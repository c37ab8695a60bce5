"""Shared fixtures: the tiny seeded Visualized-BGE models whose reference outputs we must reproduce."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from pymilvus import MilvusClient, MilvusException

from rag.embeddings import VisualizedBGE
from tests.helpers.models import PARITY as PARITY  # re-exported: tests import it from here too
from tests.helpers.models import SUITE_SETTINGS, parity_dir
from tests.milvus_server import MilvusLiteServer

# A suite started in the background (`pytest &`) inherits an ignored SIGINT, and so would every command the tests
# start, so the tests that press Ctrl-C in a command would press it for nothing: give SIGINT back its handler here
# (an ignored signal survives exec; a handled one is reset to the default in the child).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Checkpoint hashes are remembered in the user's cache folder: keep the suite's out of the real one.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="rag-test-cache-")


def load_tiny(variant: str = "base", **kwargs) -> VisualizedBGE:
    """A tiny fixture model, on the CPU in float32 unless told otherwise (parity is checked in float32)."""
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("dtype", "float32")
    d = parity_dir(variant)
    return VisualizedBGE.from_pretrained(
        d / "weights.pth", d / "text_model", vision_config=d / "vision_config.json", **kwargs
    )


class Parity:
    """One fixture folder: its cases, expected arrays and image paths."""

    def __init__(self, variant: str):
        self.variant = variant
        self.dir = parity_dir(variant)
        self.cases = json.loads((self.dir / "cases.json").read_text())
        self.expected = dict(np.load(self.dir / "expected.npz"))
        self.images = [self.dir / "images" / name for name in self.cases["images"]]


@pytest.fixture(scope="session")
def tiny_base() -> VisualizedBGE:
    return load_tiny("base")


@pytest.fixture(scope="session", params=["base", "m3"])
def parity(request) -> tuple[Parity, VisualizedBGE]:
    return Parity(request.param), load_tiny(request.param)


# Lite servers idle out after 3 s and commands run as processes keep no warm model process (SUITE_SETTINGS).
for _name, _value in SUITE_SETTINGS.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    """One standalone ``milvus-lite server`` on a free loopback port for the whole session."""
    server = MilvusLiteServer(tmp_path_factory.mktemp("milvus-server") / "data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["lite", "http"])
def milvus_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's store lives: a Milvus Lite folder of its own (``lite``, the default store, served by its shared
    server), or a database of its own on the session's standalone server (``http``, as a Milvus server is reached)."""
    if request.param == "lite":
        return str(tmp_path / "lite" / "milvus.db")
    server: MilvusLiteServer = request.getfixturevalue("milvus_server")
    return database_of(server.uri, request.node.nodeid)


def database_of(server_uri: str, test_id: str) -> str:
    """The URI of a new database of its own for the test ``test_id`` on the server at ``server_uri``."""
    name = "t_" + hashlib.sha1(test_id.encode()).hexdigest()[:16]
    client = _client(server_uri)
    if name in client.list_databases():
        client.close()
        return f"{server_uri}/{name}"
    client.create_database(name)
    client.close()
    return f"{server_uri}/{name}"


def _client(server_uri: str, attempts: int = 5) -> MilvusClient:
    """A client of the session's server; its first call is retried: the server's gRPC now and then turns a new
    connection away with "Too many pings" (keepalive pings of the session's earlier clients)."""
    for attempt in range(1, attempts):
        try:
            return MilvusClient(server_uri)
        except (MilvusException, grpc.RpcError):
            time.sleep(0.5 * attempt)
    return MilvusClient(server_uri)
