"""What the ``rag`` command runs first: hand a model command to the warm model process, starting it if needed.

Only standard modules, ``psutil`` and ``filelock`` load here: a warm command never imports torch, transformers,
pymilvus or LlamaIndex in the ``rag`` process. Whatever stops the hand-over (an unwritable data folder, a full disk,
a process that cannot start) is said in one line, and the command runs in this process as it always did.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from rag import background
from rag.cli.warm import wire
from rag.cli.warm.key import ProcessKey, code_stamp, key_of

#: The commands a warm process runs; ``ingest`` only when one is already up for its settings (see the README).
WARM = frozenset({"search", "ask", "chat", "similarity", "classify"})
IF_UP = frozenset({"ingest"})
DEFAULT_KEEP = 300.0
LOG = "process.log"
ERROR_PREFIX = "rag-warm error: "
#: Seconds a command waits for another one starting the process.
_LOCK_WAIT = 120.0
#: Seconds a process may take to listen (it loads the model later, with its first command).
_START_WAIT = 60.0
#: Seconds a live process may take to answer a ping before it counts as hung.
_PING_WAIT = 10.0
_PINGS = 2
_ROOT = Path(__file__).resolve().parents[3]
HOST = "rag.cli.warm_host"


class Unavailable(RuntimeError):
    """No warm process can be used; the message says why, in one line."""


def keep_warm(environ: Mapping[str, str]) -> float | None:
    """``RAG_KEEP_WARM`` in seconds (None when it is not a number of 0 or more: the command reports it)."""
    try:
        value = float(environ.get("RAG_KEEP_WARM", DEFAULT_KEEP))
    except ValueError:
        return None
    return value if value >= 0 else None


def command_of(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The command ``argv`` runs (after global ``-v``), and the arguments from it on."""
    rest = list(argv)
    while rest and rest[0] in ("-v", "--verbose"):
        rest = rest[1:]
    return (rest[0] if rest else None), rest


def dispatch(argv: Sequence[str]) -> int | None:
    """Run ``rag argv`` in the warm process and return its exit status, or None when it should run here."""
    command, rest = command_of(argv)
    keep = keep_warm(os.environ)
    if command not in WARM | IF_UP or not keep or "--help" in rest:
        return None
    cwd = Path.cwd()
    key = key_of(rest, os.environ, cwd)
    try:
        found = connect(key, keep, start=command in WARM)
    except Unavailable as exc:
        print(f"rag: running in this process: {exc}", file=sys.stderr)
        return None
    if found is None:
        return None
    lease, socket_path = found
    try:
        return relay(socket_path, request(list(argv), cwd, keep))
    except KeyboardInterrupt:  # Ctrl-C: this command ends; the process goes on serving the others
        print(file=sys.stderr)
        return 130
    except wire.Disconnected as exc:
        print(f"rag: the warm model process went away ({exc}); running in this process", file=sys.stderr)
        return None
    finally:
        lease.release()


def request(argv: list[str], cwd: Path, keep: float) -> dict[str, Any]:
    """What the command would have used itself: its arguments, folder, environment and terminal."""
    env = dict(os.environ)
    ttys = [stream.isatty() for stream in (sys.stdin, sys.stdout, sys.stderr)]
    if "COLUMNS" not in env and (ttys[1] or ttys[2]):
        env["COLUMNS"] = str(os.get_terminal_size((sys.stdout if ttys[1] else sys.stderr).fileno()).columns)
    return {"argv": argv, "cwd": str(cwd), "env": env, "keep_warm": keep, "ttys": ttys, "prog": _prog_name()}


def _prog_name() -> str:
    """What Click would call the program in this process (``rag``, ``python -m rag.cli``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return os.path.basename(sys.argv[0]) or "rag"


def connect(key: ProcessKey, keep: float, *, start: bool) -> tuple[background.Lease, Path] | None:
    """A lease on the process for ``key`` and its socket, found, or started when ``start`` (None: none runs)."""
    folder = key.folder
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / background.CLIENTS).mkdir(exist_ok=True)
    except OSError as exc:
        raise Unavailable(f"cannot write the warm model process's files in {folder} ({exc.strerror or exc})") from exc
    stamp = code_stamp()
    try:
        lease, found = background.acquire(folder, lambda: _find_or_start(key, keep, stamp, start), wait=_LOCK_WAIT)
    except background.LockTimeout as exc:
        raise Unavailable(f"another command held {exc.path} for {exc.waited:.0f} s") from exc
    except OSError as exc:
        raise Unavailable(f"cannot write the warm model process's files in {folder} ({exc.strerror or exc})") from exc
    if found is None:
        lease.release()
        return None
    return lease, found


def _find_or_start(key: ProcessKey, keep: float, stamp: str, start: bool) -> Path | None:
    """The socket of the live process (dead, hung and stale ones replaced), or of a new one; called with the lock."""
    folder = key.folder
    state = background.read_state(folder)
    if state is not None:
        pid, started = state["pid"], float(state["started"])
        socket_path = folder / str(state.get("socket", ""))
        if not background.is_running(pid, started):
            reason = "is gone"
        elif state.get("stamp") != stamp:
            reason = "runs other code (the package changed); it finishes its commands and stops"
            _signal(pid, started, signal.SIGTERM)
        elif not _answers(socket_path):
            reason = f"did not answer within {_PING_WAIT * _PINGS:.0f} s; it was killed"
            _signal(pid, started, signal.SIGKILL)
        else:
            return socket_path
        print(f"rag: the warm model process {pid} {reason}; starting another", file=sys.stderr)
        (folder / background.STATE).unlink(missing_ok=True)
    return _start(key, keep) if start else None


def _answers(socket_path: Path) -> bool:
    """Whether the process answers a ping (it does at once, even while it runs a command): a process that keeps
    silent through :data:`_PINGS` tries is hung."""
    return any(wire.ping(socket_path, _PING_WAIT) is not None for _ in range(_PINGS))


def _signal(pid: int, started: float, signum: int) -> None:
    if background.is_running(pid, started):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _start(key: ProcessKey, keep: float) -> Path:
    folder = key.folder
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", HOST, "--folder", str(folder), "--keep", str(keep)]
    command += ["--model", key.describe()]

    def listening(pid: int) -> Path | None:
        state = background.read_state(folder)
        return folder / str(state["socket"]) if state is not None and state["pid"] == pid else None

    try:
        _, socket_path, exited = background.spawn(command, folder / LOG, listening, wait=_START_WAIT, env=env)
    except OSError as exc:
        raise Unavailable(f"the warm model process could not start ({exc.strerror or exc})") from exc
    if socket_path is not None:
        return socket_path
    if exited is not None:
        reason = background.last_error(folder / LOG, ERROR_PREFIX) or f"{exited}; see {folder / LOG}"
        raise Unavailable(f"the warm model process did not start: {reason}")
    raise Unavailable(f"the warm model process did not listen within {_START_WAIT:.0f} s; see {folder / LOG}")


def relay(socket_path: Path, sent: dict[str, Any]) -> int:
    """Send the command, print what it prints, answer its reads from this terminal; return its exit status.

    :class:`wire.Disconnected` before anything was printed means the command may run here instead.
    """
    printed = False
    with wire.connect(socket_path, None) as sock:
        wire.send_json(sock, wire.REQUEST, sent)
        while True:
            try:
                kind, payload = wire.receive(sock)
            except wire.Disconnected:
                if not printed:
                    raise
                print("rag: the warm model process went away in the middle of the command", file=sys.stderr)
                return 1
            if kind in (wire.OUT, wire.ERR):
                stream = sys.stdout if kind == wire.OUT else sys.stderr
                stream.buffer.write(payload)
                stream.flush()
                printed = True
            elif kind == wire.ASK:
                wire.send(sock, wire.INPUT, sys.stdin.buffer.readline())
            elif kind == wire.EXIT:
                return int(json.loads(payload)["code"])


def running() -> list[dict[str, Any]]:
    """This user's warm model processes, with their status (for ``rag ps`` and ``rag stop``)."""
    found = []
    for process, cmdline in background.running(HOST):
        folder = Path(background.option(cmdline, "--folder") or ".")
        state = background.read_state(folder) or {}
        status = wire.ping(folder / str(state.get("socket", "")), 2.0) if state.get("pid") == process.pid else None
        try:
            started, rss = process.create_time(), process.memory_info().rss
        except psutil.Error:
            continue
        model = background.option(cmdline, "--model") or "?"
        found.append(
            {
                "pid": process.pid,
                "started": started,
                "folder": str(folder),
                "model": model,
                "rss": rss,
                "status": status,
            }
        )
    return found


def stop(processes: Sequence[Mapping[str, Any]], wait: float = 30.0) -> list[int]:
    """Ask ``processes`` to stop (each finishes the command it runs first); the pids that were still running."""
    asked = []
    for process in processes:
        if background.is_running(process["pid"], process["started"]):
            os.kill(process["pid"], signal.SIGTERM)
            asked.append(process)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(background.is_running(p["pid"], p["started"]) for p in asked):
        time.sleep(0.1)
    return [p["pid"] for p in asked]
