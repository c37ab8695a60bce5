"""``serve`` on a collection of the older schema: it writes (uploads, deletes), so it stops before loading anything,
exit 2, with one sentence naming ``rag migrate -c NAME`` and no traceback; an app made in Python says so in
``/ready``."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rag.cli import app
from rag.server import create_app
from rag.settings import Settings
from tests.connectors.test_migrate import make_v3
from tests.helpers.models import process_env, use_tiny_model

OLD = "old_v3"


@pytest.fixture(scope="module")
def outdated(settings: Settings) -> Settings:
    """The server tests' database with a schema 3 collection beside the corpus."""
    with pytest.MonkeyPatch.context() as patch:
        make_v3(settings.milvus_uri, OLD, patch)
    return Settings(**{**settings.model_dump(), "collection": OLD})


def test_serve_stops_before_loading_anything_and_names_the_migration(
    outdated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any) -> None:
        raise AssertionError("serve started uvicorn on an outdated collection")

    monkeypatch.setattr(uvicorn.Server, "run", never)
    use_tiny_model(monkeypatch, RAG_DATA_DIR=str(outdated.data_dir))
    result = CliRunner().invoke(app, ["serve", "-c", OLD, "--uri", outdated.milvus_uri])
    said = " ".join(result.output.split())  # one sentence, however the terminal wraps it
    assert result.exit_code == 2, result.output
    assert said.startswith("error: ") and said.count("error:") == 1 and f"`rag migrate -c {OLD}`" in said
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)  # typer's exit, no crash


def test_an_app_on_an_outdated_collection_is_not_ready_and_says_why(outdated: Settings) -> None:
    with TestClient(create_app(outdated)) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").json()["status"] == "loading":
            assert time.monotonic() < deadline, "the app is still loading"
            time.sleep(0.02)
        ready = client.get("/ready").json()
    assert ready["error"] == "not_ready" and f"rag migrate -c {OLD}" in ready["message"]
    assert outdated.milvus_uri not in ready["message"]  # the store's address stays in the log


@pytest.mark.slow
def test_the_serve_process_exits_2_with_one_error_and_no_traceback(outdated: Settings) -> None:
    env = process_env(RAG_KEEP_WARM="0", RAG_DATA_DIR=str(outdated.data_dir), COLUMNS="400")
    command = [sys.executable, "-m", "rag.cli", "serve", "-c", OLD, "--uri", outdated.milvus_uri, "--port", "0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"`rag migrate -c {OLD}`" in lines[0], lines
    assert "Traceback" not in done.stderr + done.stdout
