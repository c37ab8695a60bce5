"""The shared Milvus Lite server of one data folder: Milvus Lite's gRPC server, plus the bookkeeping of its users.

Started by ``connectors.milvus.lite_server`` (never by hand): ``python -m connectors.milvus.supervisor
--data-dir D --idle S``. It listens on 127.0.0.1 only, records its pid and port in the state file once it
listens, and stops ``S`` seconds after the last process registered in ``clients/`` exited or was killed, when
its data folder is deleted, or on SIGTERM/SIGINT. It runs in a session of its own, so it outlives the process
that started it while others use it, and never outlives its last user by more than ``S`` seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import psutil

from connectors.milvus.lite_server import ERROR_PREFIX, HOST, ServerState, quiet_unserved_calls, state_dir
from rag.background import IdleTimer, stop_when_idle

if TYPE_CHECKING:
    from milvus_lite.db import MilvusLite

logger = logging.getLogger("connectors.milvus.supervisor")
_WORKERS = 10
_MAX_MESSAGE = 256 * 2**20  # as milvus-lite's own server and Milvus standalone allow
#: The keepalive pings the server accepts from its clients. pymilvus pings every 10 s, during calls and between
#: them; gRPC's default server policy allows one ping per 5 minutes during a call and none between calls, and
#: answers the third early ping with GOAWAY "too_many_pings", failing the call in flight: loading a collection
#: while Lite builds its HNSW index (minutes at 100k rows) met it. Milvus's own servers accept pings every 5 s,
#: calls or not; this loopback server accepts one a second.
PING_POLICY = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1_000),  # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS
)


def _free(port: int) -> int:
    """``port`` when it can be bound on loopback now (a restarted server keeps its address), else 0 (any)."""
    if port:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no obstacle
            try:
                probe.bind((HOST, port))
                return port
            except OSError:
                pass
    return 0


def _gone(data_dir: Path) -> str | None:
    return None if data_dir.exists() else f"the data folder {data_dir} was removed"


def start_grpc(data_dir: Path, port: int) -> tuple[grpc.Server, MilvusLite, int]:
    """Milvus Lite's gRPC service on ``data_dir``, listening on the loopback ``port`` (0: any), as
    ``milvus-lite server`` runs it but accepting pymilvus's keepalive pings (:data:`PING_POLICY`)."""
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from milvus_lite.db import MilvusLite
    from pymilvus.grpc_gen import milvus_pb2_grpc

    db = MilvusLite(str(data_dir))
    try:
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=_WORKERS), options=[*options, *PING_POLICY])
        milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(db), server)
        bound = server.add_insecure_port(f"{HOST}:{port}")
        server.start()
    except BaseException:
        db.close()
        raise
    return server, db, bound


def serve(data_dir: Path, idle: float, port: int) -> int:
    folder = state_dir(data_dir)
    try:
        server, db, bound = start_grpc(data_dir, _free(port))
    except Exception as exc:  # reported to the process that started us, through the log
        print(f"{ERROR_PREFIX}{type(exc).__name__}: {exc}", flush=True)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    started = psutil.Process().create_time()
    ServerState(pid=os.getpid(), started=started, port=bound, data_dir=str(data_dir)).write(folder)
    logger.info("Milvus Lite serving %s on %s:%d", data_dir, HOST, bound)
    try:
        stop_when_idle(folder, IdleTimer(idle), stop, gone=lambda: _gone(data_dir))
    finally:
        server.stop(grace=2).wait()
        db.close()
        logger.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connectors.milvus.supervisor", description=__doc__)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--idle", type=float, default=15.0, help="seconds to wait after the last user left")
    parser.add_argument("--port", type=int, default=0, help="port to listen on if free (0: any)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    for noisy in ("milvus_lite", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_unserved_calls()
    return serve(args.data_dir.absolute(), args.idle, args.port)


if __name__ == "__main__":
    sys.exit(main())
