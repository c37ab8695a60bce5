"""The shared Milvus Lite server speaks gRPC as pymilvus expects: it accepts the client's keepalive pings through
a long call, and the calls Lite does not serve (``AllocTimestamp``) leave no traceback in the user's terminal."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest
from pymilvus import MilvusClient

from connectors.milvus import ConnectOptions, MilvusStore, schema
from connectors.milvus.lite_server import ServerState, state_dir

from .milvus_corpus import ENCODER, text_item, unit_vectors

ROOT = Path(__file__).resolve().parents[2]
SLOW = 12.0  # seconds the server takes to answer, long enough for gRPC's default policy to refuse the pings
# The shared server, with one call made slow (as loading a collection is while Lite builds an index at scale).
SLOW_SERVER = textwrap.dedent(
    """
    import sys, time
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from connectors.milvus.supervisor import main

    answer = MilvusServicer.GetVersion
    MilvusServicer.GetVersion = lambda self, request, context: time.sleep(float(sys.argv[2])) or answer(
        self, request, context
    )
    sys.exit(main(["--data-dir", sys.argv[1], "--idle", "120"]))
    """
)


def _port(folder: Path, server: subprocess.Popen[bytes], wait: float = 60.0) -> int:
    deadline = time.monotonic() + wait
    while (state := ServerState.read(folder)) is None or state.pid != server.pid:
        assert server.poll() is None and time.monotonic() < deadline, "the shared server did not start"
        time.sleep(0.05)
    return state.port


def test_a_long_call_outlasts_the_clients_keepalive_pings(tmp_path: Path) -> None:
    """pymilvus pings the server every 10 s, also during a call; with gRPC's default server policy the third early
    ping gets GOAWAY "too_many_pings", which fails the call. Here the client pings every 1.5 s, with no cap on pings
    between data frames, so that a 12 s call meets that policy (it fails without the server's ping policy)."""
    db = tmp_path / "milvus.db"
    state_dir(db).mkdir()  # as acquire() makes it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(db), str(SLOW)], env=env)
    try:
        port = _port(state_dir(db), server)
        pings = {"grpc.keepalive_time_ms": 1_500, "grpc.http2.max_pings_without_data": 0}
        client = MilvusClient(uri=f"http://127.0.0.1:{port}", grpc_options=pings)
        started = time.monotonic()
        assert client.get_server_version(timeout=None, retry_times=0).startswith("milvus_lite")
        assert time.monotonic() - started >= SLOW  # answered once, not retried after a GOAWAY
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert server.returncode == 0


def test_a_new_lite_collection_logs_no_unserved_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, Milvus Lite's gRPC server logs to the user's terminal: creating a collection and switching its
    index (which pymilvus may wait for with ``AllocTimestamp``) leaves nothing there; other failures still show."""
    monkeypatch.setattr(schema, "LITE_HNSW_ROWS", 2)  # the flush switches the vectors to HNSW
    caplog.set_level(logging.DEBUG, logger="grpc._server")
    db = tmp_path / "milvus.db"
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER, options=ConnectOptions(lite="in-process")) as store:
        store.upsert([text_item(i) for i in range(3)], unit_vectors(3, seed=7))
        store.flush()
        assert store.count() == 3 and len(store.search(unit_vectors(1, seed=7)[0], k=2)) == 2
        client = store._core.client.client  # noqa: SLF001  (pymilvus itself, on the same in-process server)
        client._get_connection().alloc_timestamp()  # noqa: SLF001  (what pymilvus does when it waits)
        assert [r for r in caplog.records if r.name == "grpc._server"] == []
        with pytest.raises(grpc.RpcError):  # Lite does not serve roles either: that failure is logged
            client.create_role("reader", timeout=5)
    [record] = [r for r in caplog.records if r.name == "grpc._server"]
    assert "Method not implemented" in record.getMessage() and record.levelno == logging.ERROR
