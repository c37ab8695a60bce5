"""The shared Milvus Lite server: one per data folder, found by every process, replaced when stale, gone once
its last user is, and clear errors for data it cannot serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from connectors.milvus import ConnectOptions, MilvusStore, StoreError, list_collections
from connectors.milvus.lite_server import LiteServerError, ServerState, acquire, is_running, state_dir
from tests.milvus_server import free_port

from .milvus_corpus import ENCODER, text_item, unit_vectors

ROOT = Path(__file__).resolve().parents[2]
USER = textwrap.dedent(
    """
    import sys
    from connectors.milvus import MilvusStore
    from tests.connectors.milvus_corpus import ENCODER, text_item, unit_vectors
    with MilvusStore.open(sys.argv[1], "knowledge", encoder_info=ENCODER) as store:
        n = int(sys.argv[2])
        store.upsert([text_item(i) for i in range(n)], unit_vectors(n, seed=3))
        print(store.address, flush=True)
        sys.stdin.read()
    """
)


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )


def _servers(db: Path) -> list[psutil.Process]:
    """The shared-server processes running for ``db``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "connectors.milvus.supervisor" in cmdline and str(db.absolute()) in cmdline:
            found.append(process)
    return found


def _gone(process: psutil.Process, within: float) -> bool:
    try:
        process.wait(timeout=within)
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.mark.slow
def test_two_processes_share_one_server_and_see_each_others_writes(tmp_path: Path) -> None:
    db = tmp_path / "milvus.db"
    other = _python(USER, str(db), "3")
    try:
        assert other.stdout is not None
        address = other.stdout.readline().strip()
        with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as store:
            assert store.address == address and store.backend.value == "lite"
            assert store.count() == 3
            store.upsert([text_item(i) for i in range(3, 5)], unit_vectors(2, seed=4))
        assert list_collections(db) == ["knowledge"]
    finally:
        other.communicate("", timeout=60)
    assert other.returncode == 0
    with MilvusStore.open(db, "knowledge", create=False) as store:
        assert store.count() == 5
    assert len(_servers(db)) == 1


@pytest.mark.slow
def test_racing_processes_end_with_one_server(tmp_path: Path) -> None:
    db = tmp_path / "milvus.db"
    code = (
        "import sys; from connectors.milvus.lite_server import acquire\n"
        "print(acquire(sys.argv[1], idle=3).uri, flush=True); sys.stdin.read()"
    )
    racers = [_python(code, str(db)) for _ in range(4)]
    try:
        uris = {racer.stdout.readline().strip() for racer in racers if racer.stdout is not None}
        assert len(uris) == 1 and next(iter(uris)).startswith("http://127.0.0.1:")
        assert len(_servers(db)) == 1
    finally:
        for racer in racers:
            racer.communicate("", timeout=60)


@pytest.mark.slow
def test_the_server_stops_once_its_last_user_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "milvus.db"
    user = _python(USER, str(db), "2")
    assert user.stdout is not None and user.stdout.readline().startswith("http://")
    [server] = _servers(db)
    user.kill()  # -9: no chance to say goodbye
    user.wait(timeout=30)
    assert _gone(server, within=60)  # RAG_MILVUS_LITE_IDLE=3 in the tests, and at most 50 s by the settings
    assert not (state_dir(db) / "state.json").exists()
    with MilvusStore.open(db, "knowledge", create=False) as store:  # nothing lost; a new server is started
        assert store.count() == 2


def test_a_start_time_a_second_off_is_the_same_process() -> None:
    """psutil's start times move with the boot time, which the kernel gives in whole seconds: a user read a
    second off is still alive (else its server stops in the middle of its call); a reused pid is not."""
    me = psutil.Process()
    assert is_running(me.pid, me.create_time() + 1.0) and is_running(me.pid, me.create_time() - 1.0)
    assert not is_running(me.pid, me.create_time() - 60.0)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("recorded", ["crashed server", "pid reused by another process", "garbage"])
def test_a_stale_state_file_is_replaced_and_nothing_is_lost(tmp_path: Path, recorded: str) -> None:
    db = tmp_path / "milvus.db"
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as store:
        store.upsert([text_item(0)], unit_vectors(1, seed=5))
        [server] = _servers(db)
    server.kill()
    server.wait(timeout=30)
    state = state_dir(db) / "state.json"
    if recorded == "crashed server":
        ServerState(pid=_dead_pid(), started=1.0, port=free_port()).write(state_dir(db))
    elif recorded == "pid reused by another process":  # this test's own pid: alive, but started at another time
        ServerState(pid=os.getpid(), started=1.0, port=free_port()).write(state_dir(db))
    else:
        state.write_text("{not json")
    with MilvusStore.open(db, "knowledge", create=False) as store:
        assert store.count() == 1
        assert json.loads(state.read_text())["pid"] == _servers(db)[0].pid


def test_a_live_server_that_does_not_answer_is_reported_not_replaced(tmp_path: Path) -> None:
    db = tmp_path / "milvus.db"
    MilvusStore.open(db, "knowledge", encoder_info=ENCODER).close()
    [server] = _servers(db)
    server.kill()
    server.wait(timeout=30)
    me = psutil.Process()
    port = free_port()
    ServerState(pid=me.pid, started=me.create_time(), port=port).write(state_dir(db))
    with pytest.raises(StoreError, match=rf"\(pid {me.pid}\) does not answer on 127.0.0.1:{port}.*kill {me.pid}"):
        MilvusStore.open(db, "knowledge", create=False)
    (state_dir(db) / "state.json").unlink()
    assert list_collections(db) == ["knowledge"]


def test_a_file_or_a_foreign_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    old.write_bytes(b"SQLite format 3\x00 milvus lite 2")
    with pytest.raises(StoreError, match="is a file, not a Milvus Lite data folder.*Nothing was changed"):
        MilvusStore.open(old, "knowledge", encoder_info=ENCODER)
    assert old.read_bytes() == b"SQLite format 3\x00 milvus lite 2"

    foreign = tmp_path / "photos.db"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(StoreError, match="holds other files and is not a Milvus Lite data folder"):
        MilvusStore.open(foreign, "knowledge", encoder_info=ENCODER)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    assert _servers(old) == [] and _servers(foreign) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders: the test cannot arrange one")
def test_a_folder_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "milvus.db"
    MilvusStore.open(db, "knowledge", encoder_info=ENCODER).close()
    db.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="cannot be written by this user"):
            MilvusStore.open(db, "knowledge", create=False, options=ConnectOptions(lite="in-process"))
    finally:
        db.chmod(0o755)
    with MilvusStore.open(db, "knowledge", create=False) as store:
        assert store.count() == 0


def test_a_folder_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(StoreError, match="cannot create the folder of the Milvus Lite data"):
        MilvusStore.open(tmp_path / "notes.txt" / "milvus.db", "knowledge", encoder_info=ENCODER)
    assert (tmp_path / "notes.txt").read_text() == "a file, not a folder"


def test_in_process_lite_stays_available(tmp_path: Path) -> None:
    db = tmp_path / "milvus.db"
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER, options=ConnectOptions(lite="in-process")) as store:
        store.upsert([text_item(0)], unit_vectors(1, seed=6))
        assert store.address == str(db) and store.count() == 1
    assert _servers(db) == []


def test_acquire_says_why_the_server_did_not_start(tmp_path: Path) -> None:
    db = tmp_path / "milvus.db"
    holder = _python(
        "import sys; from pymilvus import MilvusClient\n"
        "MilvusClient(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
        str(db),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(LiteServerError, match="did not start: DataDirLockedError"):
            acquire(db, idle=3)
    finally:
        holder.communicate("", timeout=60)


@pytest.mark.slow
def test_a_copied_folder_never_uses_the_original_server_and_the_state_is_private(tmp_path: Path) -> None:
    import stat

    from connectors.milvus.lite_server import STATE

    db = tmp_path / "a" / "milvus.db"
    db.parent.mkdir()
    other = _python(USER, str(db), "3")  # keeps the original's server running while the folder is copied
    try:
        assert other.stdout is not None
        address = other.stdout.readline().strip()
        folder = state_dir(db.absolute())
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / STATE).stat().st_mode) == 0o600
        subprocess.run(["cp", "-a", str(db.parent), str(tmp_path / "b")], check=True)  # a hot copy, state included
        copy = tmp_path / "b" / "milvus.db"
        with MilvusStore.open(copy, "knowledge", encoder_info=ENCODER) as store:
            assert store.address != address  # a server of its own
            copied = store.count()
            store.upsert([text_item(i) for i in range(10, 13)], unit_vectors(3, seed=5))
            assert store.count() == copied + 3
        assert ServerState.read(state_dir(copy.absolute())) is not None
        with MilvusStore.open(db, "knowledge", create=False) as store:
            assert store.address == address and store.count() == 3  # the original is untouched
    finally:
        other.communicate("", timeout=60)
    assert other.returncode == 0
