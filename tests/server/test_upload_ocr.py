"""An upload's ``ocr`` field: ``rag ingest --ocr`` for the files of one upload, the server's RAG_OCR by default."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import ocr as ocr_module
from rag.ingest import IngestReport
from rag.server import JobStatus, create_app
from rag.server.job_records import JobRecords
from rag.server.jobs import IngestJob, IngestJobs
from rag.settings import Settings
from tests.connectors.test_ocr_workers import FakeEngine, use
from tests.helpers.documents import png
from tests.server.test_job_resume import until


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> Any:
    root = tmp_path_factory.mktemp("upload-ocr")
    settings = Settings(milvus_uri=str(root / "db" / "milvus.db"), collection="kb", data_dir=root / "data")
    MilvusStore.open(settings.milvus_uri, "kb", encoder_info=EncoderInfo.of(tiny_base)).close()
    fake = FakeEngine()  # reads a picture's width as its text
    with pytest.MonkeyPatch.context() as monkeypatch:
        use(monkeypatch, fake)
        with TestClient(create_app(settings, encoder=tiny_base)) as client:
            yield client, settings, fake


def _upload(client: TestClient, name: str, ocr: str | None) -> dict[str, Any]:
    sent = [("files", (name, png((240, 240, 240), (500, 120)), "image/png"))]
    reply = client.post("/api/ingest", files=sent, data={"ocr": ocr} if ocr else {})
    assert reply.status_code == 202, reply.text
    job = reply.json()
    deadline = time.monotonic() + 60
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get(f"/api/ingest/{job['id']}").json()
    assert job["status"] == "done", job
    return job


def _stored(settings: Settings) -> dict[str, Any]:
    with MilvusStore.open(settings.milvus_uri, settings.collection, create=False) as store:
        return {item.name: item for item, _, _ in store.iter_vectors()}


def test_an_upload_says_when_its_pictures_are_read_with_ocr(app) -> None:
    client, settings, fake = app
    read = _upload(client, "shot.png", "all")
    kept = _upload(client, "plain.png", "off")
    default = _upload(client, "default.png", None)  # the server's RAG_OCR: auto, which leaves pictures alone
    assert (read["ocr"], kept["ocr"], default["ocr"]) == ("all", "off", None)
    stored = _stored(settings)
    assert stored["shot.png"].text.startswith("words of a page 500 wide")
    assert stored["shot.png"].metadata["text_origin"] == "ocr"
    for name in ("plain.png", "default.png"):
        assert stored[name].text == "" and "text_origin" not in stored[name].metadata
    assert [width for _, width in fake.calls] == [500]  # the one picture asked for


def test_a_wrong_ocr_value_is_refused_naming_the_valid_ones_and_all_needs_the_extra(
    app, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, fake = app
    jobs, calls = len(client.get("/api/ingest").json()), len(fake.calls)
    sent = [("files", ("shot.png", png((240, 240, 240)), "image/png"))]
    wrong = client.post("/api/ingest", files=sent, data={"ocr": "sometimes"})
    assert wrong.status_code == 422 and all(mode in wrong.text for mode in ("'auto'", "'all'", "'off'")), wrong.text
    monkeypatch.setattr(ocr_module, "ocr_installed", lambda: False)
    missing = client.post("/api/ingest", files=sent, data={"ocr": "all"})
    assert missing.status_code == 400 and "pip install 'mmrag[ocr]'" in missing.text, missing.text
    assert (len(client.get("/api/ingest").json()), len(fake.calls)) == (jobs, calls)  # nothing queued, nothing read


def test_the_pages_upload_control_sends_the_ocr_field(app) -> None:
    client, _, _ = app
    page = client.get("/").text
    script = client.get("/static/app.js").text
    assert '<select id="ocr">' in page and all(f'value="{mode}"' in page for mode in ("", "auto", "all", "off"))
    assert 'form.append("ocr", $("ocr").value)' in script  # only when a mode is chosen: else RAG_OCR


def test_a_job_resumed_after_a_restart_reads_its_files_with_the_ocr_it_was_asked_for(tmp_path: Path) -> None:
    records = JobRecords(tmp_path / "jobs.sqlite3", "kb")

    def interrupted(paths: list[Path], on_progress: Any, stop: threading.Event) -> IngestReport:
        stop.wait(30)  # until the server stops
        return IngestReport()

    first = IngestJobs(interrupted, records=records, drain=0)
    job = first.submit([Path("/uploads/scan.pdf")], [], ocr="all")
    until(lambda: first.get(job.id).status is JobStatus.RUNNING)
    first.close()
    asked: list[str | None] = []

    def run_for(resumed: IngestJob) -> Any:
        asked.append(resumed.ocr)
        return lambda *args: IngestReport()

    second = IngestJobs(interrupted, records=records, drain=0, run_for=run_for)
    assert second.resume() == 1
    until(lambda: second.get(job.id).status is JobStatus.DONE)
    second.close()
    assert asked == ["all"] and second.get(job.id).ocr == "all"
