"""One Milvus Lite server per data folder, shared by every process that opens the folder.

Milvus Lite lets one process hold a data folder. So a folder ``D`` (``milvus.db``) is served by a server
process of its own (``connectors.milvus.supervisor``), on a loopback port, and every ``rag`` process or
library user connects to it over gRPC like to any Milvus. Beside the data lies ``.D.server/``:

- ``state.json``: the server's pid, its start time and its port, written by the server once it listens;
- ``lock``: held while a user reads the state or starts a server, and by the server when it decides to
  stop, so two racers end with one server and nobody connects to one that is stopping;
- ``clients/``: one file per process using the server (``<pid>-<start time>``); the server stops
  ``idle`` seconds after the last of them exited or was killed (a reused pid has another start time);
- ``server.log``: what the server printed, read back when it fails to start.

The lock, state, client and idle rules are ``rag.background``'s, which the warm model process follows too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag import background
from rag.background import STATE, is_running
from rag.errors import RagError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
LOG = "server.log"
ERROR_PREFIX = "rag-lite-server error: "
_LOCK_WAIT = 60.0
_START_WAIT = 60.0
_ROOT = Path(__file__).resolve().parents[2]


class LiteServerError(RagError, RuntimeError):
    """The shared Milvus Lite server cannot be found or started; the message says why and what to do."""


class _UnservedTimestamps(logging.Filter):
    """Drops gRPC's report of a call to ``AllocTimestamp``, which Milvus Lite does not serve: pymilvus asks for a
    timestamp when it waits for an index, and does without one (the error is not raised to it). Every other
    failure of a call is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, NotImplementedError):
            return True
        frames = traceback.extract_tb(error.__traceback__)
        return not frames or frames[-1].name != "AllocTimestamp"


_UNSERVED = _UnservedTimestamps()


def quiet_unserved_calls() -> None:
    """Keep the traceback gRPC logs for each ``AllocTimestamp`` call to a Milvus Lite server run in this process
    out of the log (idempotent)."""
    logging.getLogger("grpc._server").addFilter(_UNSERVED)


def state_dir(data_dir: Path) -> Path:
    """The folder beside ``data_dir`` that holds the shared server's state, lock, clients and log."""
    return data_dir.parent / f".{data_dir.name}.server"


@dataclass(frozen=True)
class ServerState:
    pid: int
    started: float
    port: int
    #: The data folder the server serves, as it was opened: a copy of the folder (``cp -a``) carries this file,
    #: and must not use the original's server ("" in files written before it was recorded).
    data_dir: str = ""

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def read(cls, folder: Path) -> ServerState | None:
        """The recorded server, or None when there is none or the file is unreadable (then it is replaced)."""
        data = background.read_state(folder)
        if data is None:
            return None
        try:
            pid, started, port = data["pid"], float(data["started"]), int(data["port"])
            return cls(pid=pid, started=started, port=port, data_dir=str(data.get("data_dir", "")))
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("ignoring the unreadable shared-server state in %s (%s)", folder, exc)
            return None

    def write(self, folder: Path) -> None:
        """Written private (0600, as every background state): it names the port that serves the data."""
        data = {"pid": self.pid, "started": self.started, "port": self.port, "data_dir": self.data_dir}
        background.write_state(folder, data)


def answers(port: int, timeout: float = 2.0) -> bool:
    """Whether something accepts connections on the loopback ``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class Lease:
    """This process's use of the shared server of one data folder; ``release`` (or exit) ends it."""

    def __init__(self, data_dir: Path, uri: str, lease: background.Lease) -> None:
        self.data_dir = data_dir
        self.uri = uri
        self._lease = lease

    def release(self) -> None:
        self._lease.release()


def acquire(data_dir: str | os.PathLike[str], *, idle: float) -> Lease:
    """Register this process as a user of ``data_dir``'s shared server, starting the server if none runs.

    ``idle``: seconds a server started here waits after its last user left before it stops.
    """
    data_dir = Path(data_dir).absolute()
    folder = state_dir(data_dir)
    try:
        folder.mkdir(exist_ok=True, mode=0o700)
        if folder.stat().st_mode & 0o077:
            with contextlib.suppress(PermissionError):  # another user's folder stays as it is
                folder.chmod(0o700)  # made by an older version, open to others
    except OSError as exc:
        raise LiteServerError(
            f"cannot write beside the Milvus Lite data {data_dir} ({exc.strerror}): the shared server keeps its "
            f"state in {folder}. Make {data_dir.parent} writable, or use another path."
        ) from exc
    try:
        lease, uri = background.acquire(folder, lambda: _find_or_start(data_dir, folder, idle), wait=_LOCK_WAIT)
    except background.LockTimeout as exc:
        raise LiteServerError(
            f"another process has held {exc.path} for {exc.waited:.0f} s while starting the Milvus Lite server "
            f"for {data_dir}; if none is running, delete that file and retry"
        ) from exc
    return Lease(data_dir, uri, lease)


def _find_or_start(data_dir: Path, folder: Path, idle: float) -> str:
    """The URI of the running server (checked), or of a new one; call with the lock held."""
    state = ServerState.read(folder)
    preferred = 0
    if state is not None and state.data_dir and state.data_dir != str(data_dir):
        logger.warning(
            "ignoring the shared-server state in %s: it was written for %s, so this folder is a copy (or was moved); "
            "starting a server of its own",
            folder,
            state.data_dir,
        )
        (folder / STATE).unlink(missing_ok=True)
        state = None
    if state is not None:
        if is_running(state.pid, state.started):
            if answers(state.port):
                logger.info("using the Milvus Lite server for %s on %s (pid %d)", data_dir, state.uri, state.pid)
                return state.uri
            raise LiteServerError(
                f"the Milvus Lite server for {data_dir} (pid {state.pid}) does not answer on {HOST}:{state.port}. "
                f"It may be hung: stop it (kill {state.pid}) and retry; the data stays as it is."
            )
        logger.info("the Milvus Lite server recorded for %s (pid %d) is gone; starting another", data_dir, state.pid)
        (folder / STATE).unlink(missing_ok=True)
        preferred = state.port
    return _start(data_dir, folder, idle, preferred).uri


def _start(data_dir: Path, folder: Path, idle: float, port: int) -> ServerState:
    """Spawn the server, detached from this process's session, and wait until it listens."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "connectors.milvus.supervisor", "--data-dir", str(data_dir)]
    command += ["--idle", str(idle), "--port", str(port)]

    def listening(pid: int) -> ServerState | None:
        state = ServerState.read(folder)
        return state if state is not None and state.pid == pid else None

    _, state, exited = background.spawn(command, folder / LOG, listening, wait=_START_WAIT, env=env)
    if state is not None:
        logger.info("started the Milvus Lite server for %s on %s (pid %d)", data_dir, state.uri, state.pid)
        return state
    if exited is not None:
        reason = background.last_error(folder / LOG, ERROR_PREFIX) or f"see its log, {folder / LOG}"
        raise LiteServerError(f"the Milvus Lite server for {data_dir} did not start: {reason}")
    raise LiteServerError(
        f"the Milvus Lite server for {data_dir} did not listen within {_START_WAIT:.0f} s; see {folder / LOG}"
    )


@contextmanager
def shared_lite(data_dir: str | os.PathLike[str], *, idle: float | None = None) -> Iterator[str]:
    """The URI of ``data_dir``'s shared Milvus Lite server, started if needed and kept for the ``with`` block:
    hand it to any Milvus client (``MilvusClient(uri)``, LlamaIndex's ``MilvusVectorStore(uri=...)``).

    ``idle`` defaults to ``RAG_MILVUS_LITE_IDLE``.
    """
    if idle is None:
        from rag.settings import Settings

        idle = Settings().milvus_lite_idle
    lease = acquire(data_dir, idle=idle)
    try:
        yield lease.uri
    finally:
        lease.release()
