"""`rag ingest --watch`: creations, edits, renames and deletions applied while watching, on the shared store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import SourceOptions, open_sources
from rag.ingest import ingest
from rag.ingest.watch import Watcher, WatchError
from tests.helpers.models import process_env
from tests.ingest.test_cli_ingest import run
from tests.ingest.test_pipeline import ROOT, make_folder


def _state(db: Path, collection: str = "kb") -> dict[str, str]:
    """name → text of every item (read through a store of its own, as `rag serve` would)."""
    with MilvusStore.open(db, collection, create=False) as store:
        return {item.name: item.text for item, _, _ in store.iter_vectors()}


def _until(check: Callable[[dict[str, str]], bool], db: Path, what: str) -> dict[str, str]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = _state(db)
        if check(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"the watch did not apply: {what}; the collection holds {sorted(_state(db))}")


@pytest.mark.slow
def test_watch_applies_creations_edits_renames_and_deletions(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "photos", 3)
    db = tmp_path / "db" / "milvus.db"
    with MilvusStore.open(db, "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([folder]), tiny_base, store)
        watcher = Watcher([folder], tiny_base, store, SourceOptions(), debounce_ms=600, step_ms=100, quiet_seconds=0.5)
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop, None, ready.set))
        thread.start()
        try:
            assert ready.wait(60)
            make_folder(tmp_path / "spare", 5)
            picture = (tmp_path / "spare" / "img004.png").read_bytes()
            with (folder / "new.png").open("wb") as f:  # written in two halves: never read half-done
                f.write(picture[: len(picture) // 2])
                f.flush()
                time.sleep(0.2)
                f.write(picture[len(picture) // 2 :])
            (folder / "new.txt").write_text("a freshly painted fence")
            _until(lambda s: s.get("new.png") == "a freshly painted fence", db, "a created file")

            (folder / "new.txt").write_text("a fence painted twice")
            _until(lambda s: s.get("new.png") == "a fence painted twice", db, "an edited caption")

            (folder / "sub").mkdir()
            os.rename(folder / "img000.txt", folder / "sub" / "moved.txt")
            os.rename(folder / "img000.png", folder / "sub" / "moved.png")
            _until(lambda s: "sub/moved.png" in s and "img000.png" not in s, db, "a file moved")
            assert watcher.totals.encoded == 2  # the new picture and its new caption; the move took stored vectors

            (folder / "img001.png").unlink()
            (folder / "img001.txt").unlink()
            state = _until(lambda s: "img001.png" not in s, db, "a deleted file")
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not thread.is_alive()
        assert watcher.totals.summary()["skipped"] == 0  # the half-written picture was never read as broken
    with MilvusStore.open(db, "fresh", encoder_info=EncoderInfo.of(tiny_base)) as fresh:
        ingest(open_sources([folder]), tiny_base, fresh)
    assert state == _state(db, "fresh")  # what a fresh ingest of the folder holds


def test_watch_refuses_urls_and_missing_paths(tiny_base, tmp_path):
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        for source in ("https://example.com/a.png", str(tmp_path / "nowhere")):
            with pytest.raises(WatchError):
                Watcher([source], tiny_base, store, SourceOptions())
    missing = run(tmp_path, "ingest", str(tmp_path / "nowhere"), "-c", "kb", "--watch")
    assert missing.exit_code == 2 and "no such file or folder" in missing.output


@pytest.mark.slow
def test_ctrl_c_stops_the_watch_cleanly_with_a_summary(tmp_path):
    folder = make_folder(tmp_path / "photos", 2)
    env = process_env(
        PYTHONPATH=str(ROOT),
        RAG_MILVUS_URI=str(tmp_path / "db" / "milvus.db"),
        RAG_DATA_DIR=str(tmp_path / "data"),
    )
    command = [sys.executable, "-m", "rag.cli", "ingest", str(folder), "-c", "kb", "--watch", "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "watching" in line:
            break
    shutil.copy(folder / "img000.png", folder / "copy.png")
    for line in proc.stderr:  # the batch's line: applied and counted
        if "change(s)" in line:
            assert "+1 added" in line, line
            break
    assert "copy.png" in _state(tmp_path / "db" / "milvus.db")  # seen by another process on the shared store
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert lines[-1]["watch"]["added"] == 1 and lines[-1]["watch"]["batches"] >= 1, err
    assert "Traceback" not in err
