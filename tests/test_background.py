"""The lease rules every background process follows (rag.background): state files, client files, the idle timer."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psutil

from rag import background
from rag.background import IdleTimer, Registry


def test_a_state_is_read_back_and_only_its_own_process_forgets_it(tmp_path: Path) -> None:
    me = psutil.Process()
    background.write_state(tmp_path, {"pid": me.pid, "started": me.create_time(), "socket": "1.sock"})
    assert background.read_state(tmp_path) == {"pid": me.pid, "started": me.create_time(), "socket": "1.sock"}
    background.forget_state(tmp_path, me.pid + 1)  # a process leaving never removes its successor's state
    assert background.read_state(tmp_path) is not None
    background.forget_state(tmp_path, me.pid)
    assert background.read_state(tmp_path) is None


def test_an_unreadable_state_counts_as_none(tmp_path: Path) -> None:
    for text in ("{not json", '{"pid": "12", "started": 1}', '{"pid": 12}', "[]"):
        (tmp_path / background.STATE).write_text(text)
        assert background.read_state(tmp_path) is None, text


def test_client_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    me = psutil.Process()
    clients = tmp_path / background.CLIENTS
    clients.mkdir()
    (clients / background.client_name(me.pid, me.create_time())).touch()
    (clients / background.client_name(me.pid, me.create_time() - 1000)).touch()  # the pid reused since
    (clients / "garbage").touch()
    assert background.live_clients(tmp_path) == 1
    assert [p.name for p in clients.iterdir()] == [background.client_name(me.pid, me.create_time())]


def test_a_kept_registration_lasts_until_the_process_exits(tmp_path: Path) -> None:
    registry = Registry()
    registry.register(tmp_path)
    registry.release(tmp_path)
    assert background.live_clients(tmp_path) == 0
    registry.keep = True  # the warm model process: the stores it used outlive it
    registry.register(tmp_path)
    registry.release(tmp_path)
    assert background.live_clients(tmp_path) == 1
    registry.release_all()
    assert background.live_clients(tmp_path) == 0


def test_the_idle_timer_counts_from_the_last_use_with_the_last_idle_asked() -> None:
    timer = IdleTimer(300)
    assert 299 < timer.remaining() <= 300
    timer.touch(0.2)  # a later command asks for less: it counts from now
    assert timer.remaining() <= 0.2
    with timer.busy():
        time.sleep(0.3)
        assert timer.in_use and timer.remaining() == 0.2  # never due while in use
    assert not timer.in_use and timer.remaining() > 0
    time.sleep(0.3)
    assert timer.remaining() == 0


def test_an_idle_process_stops_and_forgets_its_state(tmp_path: Path) -> None:
    me = psutil.Process()
    background.write_state(tmp_path, {"pid": os.getpid(), "started": me.create_time()})
    timer, stop = IdleTimer(0.1), threading.Event()
    background.stop_when_idle(tmp_path, timer, stop)  # returns once idle (after one poll)
    assert background.read_state(tmp_path) is None
