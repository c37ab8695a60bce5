"""`rag serve`, `rag ingest` and `rag search` at once on the default store (./rag_data/milvus.db): each a process of
its own, all served by the folder's one shared Milvus Lite server."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers.models import process_env
from tests.milvus_server import free_port
from tests.server.test_store_outage import _folder

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "examples" / "corpus"


def _env() -> dict[str, str]:
    return process_env(PYTHONPATH=str(ROOT), COLUMNS="300", RAG_MILVUS_LITE_IDLE="3", RAG_KEEP_WARM="0")


def _rag(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rag.cli", *args],
        cwd=cwd,
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _serving(url: str, server: subprocess.Popen[str], within: float = 180.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"rag serve did not come up: {server.communicate(timeout=30)}")


def test_serve_ingest_and_search_run_at_once_on_the_default_store(tmp_path: Path) -> None:
    shutil.copytree(CORPUS, tmp_path / "corpus")
    more = _folder(tmp_path / "more", 12)
    first = _rag(tmp_path, "ingest", "corpus", "--json")
    assert first.wait(timeout=300) == 0, first.communicate()
    assert (tmp_path / "rag_data" / "milvus.db").is_dir()

    port = free_port()
    server = _rag(tmp_path, "serve", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        _serving(url, server)
        ingest = _rag(tmp_path, "ingest", str(more), "--json")
        search = _rag(tmp_path, "search", "-t", "a lighthouse", "--json")
        served = httpx.post(f"{url}/api/search", data={"text": "a lighthouse"}, timeout=60)
        searched, search_err = search.communicate(timeout=300)
        ingested, ingest_err = ingest.communicate(timeout=300)
        assert search.returncode == 0, search_err
        assert ingest.returncode == 0, ingest_err
        assert served.status_code == 200 and served.json()["results"]
        assert json.loads(searched)["results"]
        assert json.loads(ingested.strip().splitlines()[-1])["added"] == 12
        assert httpx.get(f"{url}/api/stats", timeout=60).json()["count"] == 7 + 12
    finally:
        server.send_signal(signal.SIGINT)
        _, serve_err = server.communicate(timeout=60)
    assert "DataDirLockedError" not in serve_err and "Traceback" not in serve_err
