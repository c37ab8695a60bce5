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
import time
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from connectors.milvus.lite_server import (
    CLIENTS,
    ERROR_PREFIX,
    HOST,
    LOCK,
    STATE,
    ServerState,
    is_running,
    parse_client,
    state_dir,
)

logger = logging.getLogger("connectors.milvus.supervisor")
_POLL = 1.0


def live_clients(folder: Path) -> int:
    """How many registered users still run; the files of those that are gone are removed."""
    live = 0
    for path in (folder / CLIENTS).glob("*"):
        parsed = parse_client(path.name)
        if parsed is not None and is_running(*parsed):
            live += 1
        else:
            path.unlink(missing_ok=True)
    return live


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


def _stop_when_idle(data_dir: Path, folder: Path, idle: float, stop: threading.Event) -> None:
    """Return once no user has been alive for ``idle`` seconds (the state file then removed), or on ``stop``."""
    last_used = time.monotonic()
    me = os.getpid()
    while not stop.wait(_POLL):
        if not data_dir.exists():
            logger.info("the data folder %s was removed; stopping", data_dir)
            return
        if live_clients(folder):
            last_used = time.monotonic()
        elif time.monotonic() - last_used >= idle:
            try:
                with FileLock(folder / LOCK, timeout=_POLL):
                    if live_clients(folder) == 0:  # nobody registered while we waited for the lock
                        state = ServerState.read(folder)
                        if state is not None and state.pid == me:
                            (folder / STATE).unlink(missing_ok=True)
                        logger.info("no user left for %.0f s; stopping", idle)
                        return
            except Timeout:
                continue  # a user is starting up: it registers first, so look again


def serve(data_dir: Path, idle: float, port: int) -> int:
    from milvus_lite.adapter.grpc.server import start_server_in_thread

    folder = state_dir(data_dir)
    try:
        server, db, bound = start_server_in_thread(data_dir=str(data_dir), host=HOST, port=_free(port))
    except Exception as exc:  # reported to the process that started us, through the log
        print(f"{ERROR_PREFIX}{type(exc).__name__}: {exc}", flush=True)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ServerState(pid=os.getpid(), started=psutil.Process().create_time(), port=bound).write(folder)
    logger.info("Milvus Lite serving %s on %s:%d", data_dir, HOST, bound)
    try:
        _stop_when_idle(data_dir, folder, idle, stop)
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
    return serve(args.data_dir.absolute(), args.idle, args.port)


if __name__ == "__main__":
    sys.exit(main())
