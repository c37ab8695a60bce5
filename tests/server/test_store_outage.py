"""When the store goes away: the server says so (``/ready`` and searches answer 503) and serves again once the
store is back, though the restarted store holds the collection released; an ingest whose store dies exits 5 with one
paragraph, and a re-run ends with the exact count. Over http (a standalone ``milvus-lite server``) and on the
default store (a Milvus Lite folder, whose shared server a killed one is replaced by)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from connectors.milvus import MilvusStore
from connectors.milvus.lite_server import ServerState, state_dir
from rag.server import create_app
from rag.settings import Settings
from tests.helpers.models import process_env
from tests.milvus_server import MilvusLiteServer
from tests.retrieval.corpus import COLLECTION, LIGHTHOUSE, build

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 24
# `rag ingest`, with the store killed (-9) right after the given number of batches were written.
KILLING_INGEST = textwrap.dedent(
    """
    import os, signal, sys
    from connectors.milvus import MilvusStore
    from connectors.milvus.lite_server import ServerState, state_dir
    target, after = sys.argv[1], int(sys.argv[2])
    upsert, calls = MilvusStore.upsert, []

    def killing(self, *args, **kwargs):
        written = upsert(self, *args, **kwargs)
        calls.append(written)
        if len(calls) == after:
            print(f"acknowledged {sum(calls)}", flush=True)  # the writer may join batches: count, don't assume
            pid = int(target) if target.isdigit() else ServerState.read(state_dir(Path(target).absolute())).pid
            os.kill(pid, signal.SIGKILL)
        return written

    from pathlib import Path
    MilvusStore.upsert = killing
    sys.argv = ["rag", *sys.argv[3:]]
    from rag.cli import main
    main()
    """
)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MilvusLiteServer]:
    """A standalone server of this test's own, to kill."""
    server = MilvusLiteServer(tmp_path / "server-data").start()
    yield server
    server.stop()


def _until(client: TestClient, path: str, store: str, within: float = 60.0) -> Any:
    """``path``'s reply once ``/health`` reports the store ``store`` (the probe asks it every 2 s)."""
    deadline = time.monotonic() + within
    while client.get("/health").json()["store"] != store and time.monotonic() < deadline:
        time.sleep(0.2)
    return client.get(path)


def _sources(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["source"] for r in response.json()["results"]]


def test_serve_reports_a_dead_store_and_serves_again_after_its_restart(own_server, tmp_path, tiny_base) -> None:
    corpus = build(tmp_path / "corpus", tiny_base, db=own_server.uri)
    settings = Settings(milvus_uri=own_server.uri, collection=COLLECTION, data_dir=tmp_path / "data", milvus_timeout=10)
    with TestClient(create_app(settings, encoder=tiny_base)) as client:
        before = _sources(client.post("/api/search", data={"text": LIGHTHOUSE, "top_k": "5"}))
        assert client.get("/health").json()["store"] == "ok"

        own_server.kill()
        down = _until(client, "/ready", "unavailable")
        assert down.status_code == 503 and down.json()["message"] == "the Milvus store cannot be reached"
        assert client.get("/health").status_code == 200  # alive, and says so at once
        failed = client.post("/api/search", data={"text": LIGHTHOUSE})
        assert failed.status_code == 503 and "cannot be reached" in failed.json()["message"]
        assert own_server.uri not in failed.text and failed.headers["retry-after"] == "2"

        own_server.start()  # the same folder and port: every collection comes back released
        assert _until(client, "/ready", "ok").status_code == 200
        assert _sources(client.post("/api/search", data={"text": LIGHTHOUSE, "top_k": "5"})) == before
        assert client.get("/api/stats").json()["count"] == len(corpus.items)


def test_serve_on_the_default_store_outlives_a_killed_shared_server(tmp_path, tiny_base) -> None:
    corpus = build(tmp_path / "corpus", tiny_base)
    settings = Settings(milvus_uri=corpus.db, collection=COLLECTION, data_dir=tmp_path / "data", milvus_timeout=10)
    with TestClient(create_app(settings, encoder=tiny_base)) as client:
        before = _sources(client.post("/api/search", data={"text": LIGHTHOUSE, "top_k": "5"}))
        os.kill(ServerState.read(state_dir(Path(corpus.db))).pid, 9)
        # The next call finds the server gone, starts another on the folder, loads the collection, retries.
        assert _sources(client.post("/api/search", data={"text": LIGHTHOUSE, "top_k": "5"})) == before
        assert client.get("/health").status_code == 200
        assert client.get("/api/stats").json()["count"] == len(corpus.items)


def _folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(root / f"img{i:03d}.png")
        (root / f"img{i:03d}.txt").write_text(f"picture number {i}")
    return root


def _rag(tmp_path: Path, uri: str, *args: str, kill: str | None = None) -> subprocess.CompletedProcess[str]:
    env = process_env(
        PYTHONPATH=str(ROOT),
        COLUMNS="300",
        RAG_MILVUS_URI=uri,
        RAG_DATA_DIR=str(tmp_path / "data"),
        RAG_MILVUS_TIMEOUT="10",
    )
    command = [sys.executable, "-c", KILLING_INGEST, kill, "1", *args] if kill else [sys.executable, "-m", "rag.cli"]
    command += [] if kill else list(args)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def _count(uri: str) -> int:
    with MilvusStore.open(uri, "kb", create=False) as store:
        return store.count()


@pytest.mark.slow
def test_an_ingest_whose_store_dies_exits_5_and_a_rerun_ends_with_the_exact_count(own_server, tmp_path) -> None:
    folder = _folder(tmp_path / "corpus", ITEMS)
    assert own_server.process is not None
    killed = _rag(
        tmp_path,
        own_server.uri,
        "ingest",
        str(folder),
        "-c",
        "kb",
        "--batch-size",
        "4",
        kill=str(own_server.process.pid),
    )
    assert killed.returncode == 5, killed.stderr
    message = " ".join(killed.stderr.split())
    assert "Traceback" not in killed.stderr and "MilvusException" not in killed.stderr
    assert f"the store at {own_server.uri} cannot be reached" in message
    acknowledged = int(re.search(r"acknowledged (\d+)", killed.stdout).group(1))  # type: ignore[union-attr]
    assert 0 < acknowledged < ITEMS
    assert f"Stored so far: {acknowledged} new and 0 replaced item(s) in collection 'kb'" in message
    assert "re-run the same command to go on; it is idempotent" in message

    own_server.process.wait(timeout=30)
    own_server.start()
    assert _count(own_server.uri) == acknowledged  # what was acknowledged survived the crash
    rerun = _rag(tmp_path, own_server.uri, "ingest", str(folder), "-c", "kb", "--batch-size", "4", "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert (summary["added"], summary["unchanged"]) == (ITEMS - acknowledged, acknowledged)
    assert _count(own_server.uri) == ITEMS


@pytest.mark.slow
def test_an_ingest_into_the_default_store_goes_on_when_its_shared_server_is_killed(tmp_path) -> None:
    folder = _folder(tmp_path / "corpus", ITEMS)
    db = str(tmp_path / "rag_data" / "milvus.db")
    done = _rag(tmp_path, db, "ingest", str(folder), "-c", "kb", "--batch-size", "4", "--json", kill=db)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["added"] == ITEMS
    assert _count(db) == ITEMS
