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
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from rag.errors import RagError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
STATE = "state.json"
LOCK = "lock"
CLIENTS = "clients"
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
        try:
            data = json.loads((folder / STATE).read_text())
            pid, started, port = int(data["pid"]), float(data["started"]), int(data["port"])
            return cls(pid=pid, started=started, port=port, data_dir=str(data.get("data_dir", "")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring the unreadable shared-server state in %s (%s)", folder, exc)
            return None

    def write(self, folder: Path) -> None:
        """Written private (0600): it names the port that serves the data."""
        tmp = folder / f"{STATE}.{self.pid}.tmp"
        data = {"pid": self.pid, "started": self.started, "port": self.port, "data_dir": self.data_dir}
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(json.dumps(data))
        os.replace(tmp, folder / STATE)


def process_started(pid: int) -> float | None:
    """When process ``pid`` started, or None when it is gone (a zombie counts as gone)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


#: How far two readings of one process's start time may differ. psutil adds the boot time that the kernel
#: gives in whole seconds, recomputed from the wall clock: it moves by a second now and then (and with clock
#: updates), and a live user taken for dead let a server stop in the middle of a minutes-long index build.
#: A pid reused by a process started within these seconds of the first one's start is not a practical case.
_SAME_START = 2.5


def is_running(pid: int, started: float) -> bool:
    """Whether the process that started at ``started`` still runs as ``pid`` (not another one reusing it)."""
    now = process_started(pid)
    return now is not None and abs(now - started) < _SAME_START


def answers(port: int, timeout: float = 2.0) -> bool:
    """Whether something accepts connections on the loopback ``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def client_name(pid: int, started: float) -> str:
    return f"{pid}-{started:.3f}"


def parse_client(name: str) -> tuple[int, float] | None:
    pid, _, started = name.partition("-")
    try:
        return int(pid), float(started)
    except ValueError:
        return None


class _Registry:
    """This process's uses of shared servers: one client file per folder, kept while any store uses it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[Path, int] = {}
        self._pid = os.getpid()
        self._me = client_name(self._pid, psutil.Process().create_time())
        atexit.register(self.release_all)

    def register(self, folder: Path) -> None:
        with self._lock:
            self._users[folder] = self._users.get(folder, 0) + 1
            clients = folder / CLIENTS
            clients.mkdir(parents=True, exist_ok=True)
            (clients / self._me).touch()

    def release(self, folder: Path) -> None:
        with self._lock:
            if folder not in self._users:  # released by release_all at exit already (a store closed after it)
                return
            self._users[folder] -= 1
            if self._users[folder] == 0:
                del self._users[folder]
                (folder / CLIENTS / self._me).unlink(missing_ok=True)

    def release_all(self) -> None:
        if os.getpid() != self._pid:  # a forked child leaving: the registrations are its parent's
            return
        with self._lock:
            for folder in self._users:
                (folder / CLIENTS / self._me).unlink(missing_ok=True)
            self._users.clear()


_registry = _Registry()


class Lease:
    """This process's use of the shared server of one data folder; ``release`` (or exit) ends it."""

    def __init__(self, data_dir: Path, uri: str) -> None:
        self.data_dir = data_dir
        self.uri = uri
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            _registry.release(state_dir(self.data_dir))


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
        with FileLock(folder / LOCK, timeout=_LOCK_WAIT):
            _registry.register(folder)
            try:
                return Lease(data_dir, _find_or_start(data_dir, folder, idle))
            except BaseException:
                _registry.release(folder)
                raise
    except Timeout as exc:
        raise LiteServerError(
            f"another process has held {folder / LOCK} for {_LOCK_WAIT:.0f} s while starting the Milvus Lite server "
            f"for {data_dir}; if none is running, delete that file and retry"
        ) from exc


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
    with open(folder / LOG, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + _START_WAIT
    while time.monotonic() < deadline:
        state = ServerState.read(folder)
        if state is not None and state.pid == process.pid:
            logger.info("started the Milvus Lite server for %s on %s (pid %d)", data_dir, state.uri, state.pid)
            return state
        if process.poll() is not None:
            raise LiteServerError(f"the Milvus Lite server for {data_dir} did not start: {_failure(folder / LOG)}")
        time.sleep(0.05)
    process.kill()
    raise LiteServerError(
        f"the Milvus Lite server for {data_dir} did not listen within {_START_WAIT:.0f} s; see {folder / LOG}"
    )


def _failure(log: Path) -> str:
    """The reason the server printed last, or where to read its log."""
    lines = log.read_text(errors="replace").splitlines()
    reasons = [line.removeprefix(ERROR_PREFIX) for line in lines if line.startswith(ERROR_PREFIX)]
    return reasons[-1] if reasons else f"see its log, {log}"


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
