"""Background processes that ``rag`` processes share: leases, liveness and idle stop, written once.

Two kinds use it: the shared Milvus Lite server of a data folder (``connectors.milvus.lite_server``) and the warm
model process (``rag.cli.warm``). Each running process has a folder of its own holding:

- ``state.json``: its pid, its start time and how to reach it, written by the process once it serves;
- ``lock``: held by a user while it reads the state or starts the process, and by the process when it decides to
  stop, so two racers end with one process and nobody connects to one that is stopping;
- ``clients/``: one file per process using it (``<pid>-<start time>``); the process stops once none of them has
  run for its idle seconds (a user killed with ``kill -9`` counts as gone, and a reused pid has another start time).

Liveness is a pid and its start time, never a pid alone. This module imports no heavy library: the ``rag``
command reads it before deciding whether to load anything.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psutil
from filelock import FileLock, Timeout

logger = logging.getLogger(__name__)

STATE = "state.json"
LOCK = "lock"
CLIENTS = "clients"
#: How often a background process looks at its users.
POLL = 1.0
T = TypeVar("T")


class LockTimeout(RuntimeError):
    """Another process held a background process's lock too long; ``path`` is the lock file."""

    def __init__(self, path: Path, waited: float) -> None:
        super().__init__(f"{path} was held for {waited:.0f} s")
        self.path = path
        self.waited = waited


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


def client_name(pid: int, started: float) -> str:
    return f"{pid}-{started:.3f}"


def parse_client(name: str) -> tuple[int, float] | None:
    pid, _, started = name.partition("-")
    try:
        return int(pid), float(started)
    except ValueError:
        return None


def live_clients(folder: Path) -> int:
    """How many registered users of ``folder``'s process still run; the files of those that are gone are removed."""
    live = 0
    for path in (folder / CLIENTS).glob("*"):
        parsed = parse_client(path.name)
        if parsed is not None and is_running(*parsed):
            live += 1
        else:
            path.unlink(missing_ok=True)
    return live


def read_state(folder: Path) -> dict[str, Any] | None:
    """The recorded process's state, or None when there is none or the file is unreadable (then it is replaced)."""
    try:
        data = json.loads((folder / STATE).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            raise ValueError("no pid")
        float(data["started"])
        return data
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring the unreadable background-process state in %s (%s)", folder, exc)
        return None


def write_state(folder: Path, state: Mapping[str, Any]) -> None:
    """Record ``state`` (with ``pid`` and ``started``) at once, readable by this user only (0600): readers see the
    old file or the new one."""
    tmp = folder / f"{STATE}.{state['pid']}.tmp"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps(dict(state)))
    os.replace(tmp, folder / STATE)


def forget_state(folder: Path, pid: int) -> None:
    """Remove the state file if it still records ``pid`` (a process leaving never removes its successor's)."""
    state = read_state(folder)
    if state is not None and state["pid"] == pid:
        (folder / STATE).unlink(missing_ok=True)


class Registry:
    """This process's uses of background processes: one client file per folder, kept while any lease holds it.

    ``keep`` (set by a background process that is itself a user, such as the warm model process) keeps every
    folder registered until this process exits, so the processes it used outlive it, and not the other way round.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[Path, int] = {}
        self._pid = os.getpid()
        self._me = client_name(self._pid, psutil.Process().create_time())
        self.keep = False
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
            if self._users[folder] == 0 and not self.keep:
                del self._users[folder]
                (folder / CLIENTS / self._me).unlink(missing_ok=True)

    def release_all(self) -> None:
        if os.getpid() != self._pid:  # a forked child leaving: the registrations are its parent's
            return
        with self._lock:
            for folder in self._users:
                (folder / CLIENTS / self._me).unlink(missing_ok=True)
            self._users.clear()


registry = Registry()


class Lease:
    """This process's use of one background process; ``release`` (or exit) ends it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            registry.release(self.folder)


def acquire(folder: Path, find_or_start: Callable[[], T], *, wait: float) -> tuple[Lease, T]:
    """Register this process as a user of ``folder``'s process, then run ``find_or_start`` with the lock held
    (``wait``: seconds to wait for the lock before :class:`LockTimeout`). ``folder`` must exist."""
    try:
        with FileLock(folder / LOCK, timeout=wait):
            registry.register(folder)
            try:
                return Lease(folder), find_or_start()
            except BaseException:
                registry.release(folder)
                raise
    except Timeout as exc:
        raise LockTimeout(folder / LOCK, wait) from exc


def spawn(
    command: list[str],
    log: Path,
    ready: Callable[[int], T | None],
    *,
    wait: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], T | None, str | None]:
    """Start ``command`` detached from this process's session (its output in ``log``) and wait until
    ``ready(pid)`` returns something. Returns the process, what ``ready`` returned (None when it did not within
    ``wait`` seconds: then the process is killed) and, when it exited first, the reason it printed last."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = ready(process.pid)
        if found is not None:
            return process, found, None
        if process.poll() is not None:
            return process, None, f"exit status {process.returncode}"
        time.sleep(0.05)
    process.kill()
    return process, None, None


def last_error(log: Path, prefix: str) -> str | None:
    """The last reason a background process printed on a line starting with ``prefix``, if any."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    reasons = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    return reasons[-1] if reasons else None


def running(module: str) -> Iterator[tuple[psutil.Process, list[str]]]:
    """This user's processes running ``python -m module``, each with its command line."""
    me = os.getuid() if hasattr(os, "getuid") else None
    for process in psutil.process_iter(["cmdline", "uids"]):
        cmdline = process.info.get("cmdline") or []
        uids = process.info.get("uids")
        if module in cmdline and "-m" in cmdline and (me is None or uids is None or uids.real == me):
            yield process, cmdline


def option(cmdline: list[str], name: str) -> str | None:
    """The value of ``name`` on a command line (``--folder F``), if given."""
    return cmdline[cmdline.index(name) + 1] if name in cmdline[:-1] else None


class IdleTimer:
    """When a background process was last used, and how long it may then stay idle (changeable while it runs:
    each request of the warm model process brings its own)."""

    def __init__(self, idle: float) -> None:
        self._lock = threading.Lock()
        self.idle = idle
        self._last = time.monotonic()
        self._busy = 0

    def touch(self, idle: float | None = None) -> None:
        """Used now; from now on it may stay ``idle`` seconds (None: as before)."""
        with self._lock:
            self._last = time.monotonic()
            if idle is not None:
                self.idle = idle

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Never idle inside the block; the idle time counts from its end."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._last = time.monotonic()

    @property
    def in_use(self) -> bool:
        return self._busy > 0

    def remaining(self) -> float:
        """Seconds left before the process stops if nobody uses it (0 when due)."""
        with self._lock:
            if self._busy:
                return self.idle
            return max(0.0, self.idle - (time.monotonic() - self._last))


def stop_when_idle(
    folder: Path, timer: IdleTimer, stop: threading.Event, *, gone: Callable[[], str | None] = lambda: None
) -> None:
    """Return once no registered user has run and ``timer`` has not been used for its idle seconds (the state file
    then removed, with the lock held so no user is starting up), on ``stop``, or when ``gone`` gives a reason."""
    me = os.getpid()
    while not stop.wait(POLL):
        reason = gone()
        if reason:
            logger.info("%s; stopping", reason)
            return
        if live_clients(folder) or timer.in_use:
            timer.touch()
        elif timer.remaining() <= 0:
            try:
                with FileLock(folder / LOCK, timeout=POLL):
                    if live_clients(folder) == 0 and not timer.in_use:  # nobody came while we waited for the lock
                        forget_state(folder, me)
                        logger.info("no user left for %.0f s; stopping", timer.idle)
                        return
            except Timeout:
                continue  # a user is starting up: it registers first, so look again
