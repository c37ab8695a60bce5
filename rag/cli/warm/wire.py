"""The frames a command and the warm model process exchange: a kind byte, a length, then the payload.

A command sends ``REQUEST`` (JSON: its arguments, working folder, environment, ``keep_warm``, which of its streams
are terminals), then ``INPUT`` lines when asked (``ASK``; an empty ``INPUT`` is the end of its input). The process
answers with ``OUT`` and ``ERR`` bytes as the command prints them, then ``EXIT`` (JSON: the exit status). ``PING``
is answered with ``PONG`` (JSON: the process's status) at once, even while a command runs.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REQUEST, INPUT, PING = b"R", b"I", b"P"
OUT, ERR, ASK, EXIT, PONG = b"1", b"2", b"i", b"x", b"p"
_HEADER = struct.Struct("!cI")
#: The longest path a Unix socket address takes on Linux (108 bytes with the final NUL), with a margin.
_MAX_ADDRESS = 100


class Disconnected(ConnectionError):
    """The other side closed the connection, or went away."""


def send(sock: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    try:
        sock.sendall(_HEADER.pack(kind, len(payload)) + payload)
    except OSError as exc:
        raise Disconnected(str(exc)) from exc


def send_json(sock: socket.socket, kind: bytes, data: Any) -> None:
    send(sock, kind, json.dumps(data).encode())


def receive(sock: socket.socket) -> tuple[bytes, bytes]:
    """The next frame; :class:`Disconnected` when the connection ends."""
    kind, length = _HEADER.unpack(_exactly(sock, _HEADER.size))
    return kind, _exactly(sock, length)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except OSError as exc:
            raise Disconnected(str(exc)) from exc
        if not chunk:
            raise Disconnected("the connection was closed")
        data += chunk
    return data


@contextmanager
def address(path: Path) -> Iterator[str]:
    """An address for the socket file ``path`` that fits a Unix socket's length limit: the path itself, or on Linux
    the same file reached through this process's handle on its folder."""
    if len(os.fsencode(str(path))) < _MAX_ADDRESS:
        yield str(path)
        return
    if not Path("/proc/self/fd").is_dir():
        raise OSError(f"the path of the socket {path} is too long for a Unix socket")
    handle = os.open(path.parent, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{handle}/{path.name}"
    finally:
        os.close(handle)


def connect(path: Path, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with address(path) as where:
            sock.connect(where)
    except BaseException:
        sock.close()
        raise
    return sock


def ping(path: Path, timeout: float) -> dict[str, Any] | None:
    """The status of the process listening at ``path``, or None when it does not answer within ``timeout``."""
    try:
        with connect(path, timeout) as sock:
            send(sock, PING)
            kind, payload = receive(sock)
            data = json.loads(payload) if kind == PONG else None
            return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
