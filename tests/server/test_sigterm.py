"""A real ``rag serve`` process stopped by SIGTERM mid-upload: it drains for ``RAG_SERVER_DRAIN_SECONDS``, exits 0,
records the job as interrupted, and the next start resumes it to exact counts."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from connectors.milvus import EncoderInfo, MilvusStore
from rag.server import IngestJob, JobStatus, create_app
from rag.server.job_records import JobRecords
from rag.settings import Settings
from tests.helpers.models import process_env
from tests.server.test_job_resume import until

PICTURES = 120  # one a batch: the job is still running when the stop comes, and for longer than the drain


def _pictures() -> list[tuple[str, tuple[str, bytes, str]]]:
    files = []
    for i in range(PICTURES):
        buffer = io.BytesIO()
        Image.new("RGB", (24, 24), (i * 2, 255 - i * 2, (i * 37) % 256)).save(buffer, format="PNG")
        files.append(("files", (f"p{i:03}.png", buffer.getvalue(), "image/png")))
    return files


class Log:
    """The process's log lines (JSON), read as they come; ``url`` once it says where it listens."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[dict[str, Any]] = []
        self.url = ""
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for text in process.stderr:
            line = json.loads(text) if text.startswith("{") else {"message": text.rstrip(), "level": "RAW"}
            self.lines.append(line)
            if line["message"].startswith("listening on "):
                self.url = line["message"].split()[2]

    def messages(self) -> list[str]:
        self._thread.join(timeout=10)
        return [line["message"] for line in self.lines]


@pytest.mark.slow
def test_sigterm_drains_exits_0_and_the_next_start_resumes_the_job(
    settings: Settings, tiny_base, tmp_path: Path
) -> None:
    collection, data_dir = "stopped", tmp_path / "data"
    MilvusStore.open(settings.milvus_uri, collection, encoder_info=EncoderInfo.of(tiny_base)).close()
    env = process_env(
        RAG_MILVUS_URI=settings.milvus_uri, RAG_COLLECTION=collection, RAG_DATA_DIR=str(data_dir),
        RAG_SERVER_PORT="0", RAG_SERVER_DRAIN_SECONDS="0.5", RAG_BATCH_SIZE="1", RAG_LOG_FORMAT="json",
    )  # fmt: skip
    command = [sys.executable, "-m", "rag.cli", "serve"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = Log(process)
    try:
        until(lambda: bool(log.url) or process.poll() is not None, timeout=120)
        with httpx.Client(base_url=log.url, timeout=30) as client:
            until(lambda: client.get("/ready").status_code == 200, timeout=120)
            job_id = client.post("/api/ingest", files=_pictures()).json()["id"]
            until(lambda: client.get(f"/api/ingest/{job_id}").json()["added"] >= 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    messages = log.messages()
    assert "letting 1 ingest job(s) finish, for 0.5 s at most" in messages
    assert f"1 ingest job(s) interrupted, resumed at the next start: {job_id}" in messages
    assert not [line for line in log.lines if line["level"] in ("ERROR", "CRITICAL", "RAW")], log.lines

    (record,) = JobRecords(data_dir / "server" / "jobs.sqlite3", collection).load()
    recorded = IngestJob.model_validate_json(record.job)
    assert (record.id, recorded.status, len(record.paths)) == (job_id, JobStatus.INTERRUPTED, PICTURES)
    assert 1 <= recorded.added < PICTURES  # stopped after the drain, not run to its end

    restarted = Settings(milvus_uri=settings.milvus_uri, collection=collection, data_dir=data_dir, batch_size=32)
    with TestClient(create_app(restarted, encoder=tiny_base)) as client:
        until(lambda: client.get(f"/api/ingest/{job_id}").json()["status"] == "done", timeout=120)
        job = client.get(f"/api/ingest/{job_id}").json()
        assert (job["added"], job["unchanged"], job["resumed"], job["skipped"]) == (PICTURES, 0, 1, 0)
        assert client.get("/api/stats").json()["count"] == PICTURES
