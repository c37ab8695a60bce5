"""The warm model process: runs ``rag`` commands handed over by ``rag.cli.warm.client``, keeping the model loaded.

Started by the client (never by hand): ``python -m rag.cli.warm_host --folder F --keep S``. It listens on
``F/<pid>.sock`` (mode 0600), records itself in ``F/state.json``, and stops once no command has used it for the
idle seconds the last command asked for (``RAG_KEEP_WARM``), on SIGTERM (``rag stop``: the command running ends
first), or when its data folder is removed. Commands run one at a time, each in its own working folder and
environment and printing to its own terminal; a command waiting for input (``rag chat``) lets others run meanwhile.
A client that goes away (Ctrl-C) ends its own command only. The process stays a user of every shared Milvus Lite
server it opened until it stops, so a server outlives it by ``RAG_MILVUS_LITE_IDLE`` and no longer.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import psutil

from rag import background
from rag.cli.warm import wire
from rag.cli.warm.client import ERROR_PREFIX
from rag.cli.warm.key import code_stamp

logger = logging.getLogger("rag.cli.warm_host")


class _Client:
    """One connected command: the streams it prints to, and its input."""

    def __init__(self, sock: socket.socket, request: dict[str, Any]) -> None:
        self.sock = sock
        self.request = request
        ttys = list(request.get("ttys") or [False, False, False])
        self.stdout = _Output(self, wire.OUT, bool(ttys[1]))
        self.stderr = _Output(self, wire.ERR, bool(ttys[2]))
        self.stdin = _Input(self, bool(ttys[0]))
        self.gone = False

    def send(self, kind: bytes, payload: bytes) -> None:
        if self.gone:
            raise wire.Disconnected("the command's client went away")
        try:
            wire.send(self.sock, kind, payload)
        except wire.Disconnected:
            self.gone = True
            raise


class _Output(io.TextIOBase):
    """A text stream whose writes go to the client's stdout or stderr."""

    def __init__(self, client: _Client, kind: bytes, tty: bool) -> None:
        self._client, self._kind, self._tty = client, kind, tty

    def write(self, text: str | bytes) -> int:  # Click writes bytes where it can
        if text:
            self._client.send(self._kind, text if isinstance(text, bytes) else text.encode("utf-8", "replace"))
        return len(text)

    def isatty(self) -> bool:
        return self._tty

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _Input(io.TextIOBase):
    """The client's stdin, read a line at a time; other commands run while the client types."""

    def __init__(self, client: _Client, tty: bool) -> None:
        self._client, self._tty = client, tty

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        self._client.send(wire.ASK, b"")
        _host.running.release()
        try:
            kind, payload = wire.receive(self._client.sock)
        finally:
            _host.running.acquire()
            _host.enter(self._client)
        return payload.decode("utf-8", "replace") if kind == wire.INPUT else ""

    def isatty(self) -> bool:
        return self._tty


class _Switch(io.TextIOBase):
    """``sys.stdout``/``sys.stderr``/``sys.stdin`` of this process: the running command's stream, else the log."""

    def __init__(self, name: str, fallback: Any) -> None:
        self._name, self._fallback = name, fallback
        self.target: Any = None

    def _stream(self) -> Any:
        return self.target if self.target is not None else self._fallback

    def write(self, text: str) -> int:
        return int(self._stream().write(text))

    def flush(self) -> None:
        self._stream().flush()

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return str(self._stream().readline())

    def isatty(self) -> bool:
        return bool(self._stream().isatty())

    def fileno(self) -> int:
        if self.target is not None:
            raise io.UnsupportedOperation("a command's stream in the warm model process has no file descriptor")
        return int(self._fallback.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _Host:
    def __init__(self, folder: Path, keep: float) -> None:
        self.folder = folder
        self.timer = background.IdleTimer(keep)
        self.running = threading.Lock()  # one command at a time: they share the folder, environment and model
        self.stopping = threading.Event()
        self.stamp = code_stamp()
        self.served = 0
        self._environ = dict(os.environ)
        self.out = _Switch("stdout", sys.stdout)
        self.err = _Switch("stderr", sys.stderr)
        self.inp = _Switch("stdin", sys.stdin)

    def enter(self, client: _Client | None) -> None:
        """Make this process look like the command's own (called with ``running`` held); None: like itself."""
        request = client.request if client is not None else {}
        os.environ.clear()
        os.environ.update(request.get("env") or self._environ)
        os.chdir(request.get("cwd") or self.folder)
        self.out.target = client.stdout if client is not None else None
        self.err.target = client.stderr if client is not None else None
        self.inp.target = client.stdin if client is not None else None
        logging.getLogger().setLevel(logging.WARNING)
        from rag.cli import common

        common.console.__init__(stderr=True)  # type: ignore[misc]  # its terminal and colours are the client's

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "keep_warm": self.timer.idle,
            "remaining": self.timer.remaining(),
            "busy": self.timer.in_use,
            "served": self.served,
            "stamp": self.stamp,
            "rss": psutil.Process().memory_info().rss,
        }

    def serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                kind, payload = wire.receive(conn)
                if kind == wire.PING:
                    wire.send_json(conn, wire.PONG, self.status())
                elif kind == wire.REQUEST and not self.stopping.is_set():
                    self.run(_Client(conn, json.loads(payload)))
            except wire.Disconnected:
                pass
            except Exception:  # one connection's failure never stops the process
                logger.exception("a connection failed")

    def run(self, client: _Client) -> None:
        keep = float(client.request.get("keep_warm") or self.timer.idle)
        self.timer.touch(keep)
        code = 1
        with self.timer.busy(), self.running:
            self.enter(client)
            try:
                code = _run_command(client.request["argv"], str(client.request.get("prog") or "rag"))
            except wire.Disconnected:
                logger.info("a client went away during its command; the command was stopped")
            except Exception:
                if not client.gone:
                    traceback.print_exc()
            finally:
                _flush_logging()
                self.served += 1
                self.enter(None)
        self.timer.touch(keep)  # this command's RAG_KEEP_WARM counts from its end
        if not client.gone:
            try:
                wire.send_json(client.sock, wire.EXIT, {"code": code})
            except wire.Disconnected:
                pass


def _run_command(argv: list[str], prog: str) -> int:
    from rag.cli.commands import run

    return run(argv, prog_name=prog)


def _flush_logging() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except (OSError, ValueError):
            pass


_host: _Host


def _listen(folder: Path) -> tuple[socket.socket, Path]:
    path = folder / f"{os.getpid()}.sock"
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)  # the socket is created 0600: only this user may hand it commands
    try:
        with wire.address(path) as where:
            listener.bind(where)
    finally:
        os.umask(mask)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener, path


def _accept(listener: socket.socket, host: _Host) -> None:
    while not host.stopping.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=host.serve, args=(conn,), daemon=True).start()


def _warm_up() -> None:
    """Import what every command needs, so the first one pays only the model's load (holding no lock)."""
    import rag.cli.commands  # noqa: F401
    import rag.embeddings.registry  # noqa: F401
    import rag.retrieval  # noqa: F401
    from rag.cli import common

    common.kept_encoders = {}  # the model loads with the first command, and stays


def serve(folder: Path, keep: float) -> int:
    global _host
    try:
        listener, path = _listen(folder)
        host = _host = _Host(folder, keep)
        started = psutil.Process().create_time()
        state = {"pid": os.getpid(), "started": started, "socket": path.name, "stamp": host.stamp}
        background.write_state(folder, state)
    except OSError as exc:
        print(f"{ERROR_PREFIX}{exc.strerror or exc} ({folder})", flush=True)
        return 1
    sys.stdout, sys.stderr, sys.stdin = host.out, host.err, host.inp
    # One handler, as `rag` sets it up: a command's log lines reach its terminal, this process's own its log.
    handler = logging.StreamHandler(host.err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    background.registry.keep = True  # the Lite servers this process opens outlive it, not the reverse
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: host.stopping.set())
    threading.Thread(target=_accept, args=(listener, host), daemon=True).start()
    with host.running:
        _warm_up()
    logger.info("serving %s on %s", folder, path)
    data_dir = folder.parent.parent
    try:
        background.stop_when_idle(
            folder, host.timer, host.stopping, gone=lambda: None if data_dir.exists() else f"{data_dir} was removed"
        )
    finally:
        host.stopping.set()
        background.forget_state(folder, os.getpid())
        listener.close()
        path.unlink(missing_ok=True)
        with host.running:  # the command in progress ends first
            logger.info("stopped after %d commands", host.served)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.cli.warm_host", description=__doc__)
    parser.add_argument("--folder", required=True, type=Path)
    parser.add_argument("--keep", type=float, default=300.0, help="idle seconds before it stops")
    parser.add_argument("--model", default="", help="the model it serves, as `rag ps` shows it")
    args = parser.parse_args(argv)
    logger.setLevel(logging.INFO)
    return serve(args.folder.absolute(), args.keep)


if __name__ == "__main__":
    code = main()
    # Leave as `rag` does, without the interpreter's teardown (a second with torch loaded): the leases on the
    # stores it used end here, and its log is flushed.
    background.registry.release_all()
    logging.shutdown()
    os._exit(code)
