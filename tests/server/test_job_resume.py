"""Ingest jobs outlive the server: recorded in SQLite under the data folder, drained for a while on a stop, then
recorded as interrupted, resumed at the next start (ingestion is idempotent), and queryable after it."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rag.ingest import IngestReport
from rag.items import SourceError
from rag.server import JobStatus
from rag.server.job_records import JobRecords
from rag.server.jobs import IngestJobs


def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Store:
    """An idempotent ingestion over a set: paths stored already count as unchanged. ``open`` lets paths past the
    second through; until then the run waits (and ends early on a stop)."""

    def __init__(self) -> None:
        self.stored: set[str] = set()
        self.open = threading.Event()
        self.runs = 0

    def run(self, paths: list[Path], on_progress, stop: threading.Event) -> IngestReport:
        self.runs += 1
        report = IngestReport()
        for index, path in enumerate(paths):
            while index >= 2 and not self.open.is_set():
                if stop.wait(0.01):
                    return report
            if str(path) in self.stored:
                report.unchanged += 1
            else:
                self.stored.add(str(path))
                report.added += 1
            on_progress(report)
        return report


def _records(tmp_path: Path) -> JobRecords:
    return JobRecords(tmp_path / "data" / "server" / "jobs.sqlite3", "kb")


def test_a_stopped_job_is_recorded_resumed_at_the_next_start_and_ends_with_exact_counts(tmp_path: Path) -> None:
    store = Store()
    paths = [Path(f"/uploads/{i}.png") for i in range(5)]
    refused = [SourceError(source="upload:x.txt", reason="not an image")]
    first = IngestJobs(store.run, records=_records(tmp_path), drain=0)
    job = first.submit(paths, refused, names={"/uploads/0.png": "upload:a.png"})
    done_before = first.submit([], [])  # no inputs: done at once... after the first job, which waits
    until(lambda: first.get(job.id).added == 2)
    first.close()  # what SIGTERM does, with RAG_SERVER_DRAIN_SECONDS=0
    assert first.get(job.id).status is JobStatus.INTERRUPTED and first.get(job.id).added == 2
    assert first.get(done_before.id).status is JobStatus.INTERRUPTED  # queued when the stop came

    store.open.set()
    second = IngestJobs(store.run, records=_records(tmp_path), drain=0)
    listed = {j.id: j for j in [*second.all()]}
    assert set(listed) == set()  # nothing is listed before resume(): the app resumes once the store is open
    assert second.resume() == 2
    until(lambda: second.get(job.id).status is JobStatus.DONE and second.get(done_before.id).status is JobStatus.DONE)
    resumed = second.get(job.id)
    assert (resumed.added, resumed.unchanged, resumed.inputs, resumed.resumed) == (5, 0, 5, 1)
    assert resumed.skipped == 1 and [p.source for p in resumed.problems] == ["upload:x.txt"]
    assert store.stored == {str(p) for p in paths}
    second.close()

    third = IngestJobs(store.run, records=_records(tmp_path), drain=0)
    runs = store.runs
    assert third.resume() == 0  # finished jobs are listed, not run again
    assert [j.id for j in third.all()] == [done_before.id, job.id]
    assert third.get(job.id).status is JobStatus.DONE and store.runs == runs
    third.close()


def test_a_stop_lets_the_running_job_finish_within_the_drain(tmp_path: Path) -> None:
    store = Store()
    jobs = IngestJobs(store.run, records=_records(tmp_path), drain=30)
    job = jobs.submit([Path(f"/uploads/{i}.png") for i in range(4)], [])
    until(lambda: jobs.get(job.id).added == 2)
    threading.Timer(0.2, store.open.set).start()  # the job can go on only once the stop has begun
    jobs.close()
    assert jobs.get(job.id).status is JobStatus.DONE and jobs.get(job.id).added == 4
    assert IngestJobs(store.run, records=_records(tmp_path)).resume() == 0


def test_the_records_are_private_and_per_collection(tmp_path: Path) -> None:
    records = _records(tmp_path)
    IngestJobs(lambda *args: IngestReport(), records=records).submit([], [])
    assert stat.S_IMODE(records.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(records.path.parent.stat().st_mode) == 0o700
    other = JobRecords(records.path, "another")
    assert other.load() == [] and len(records.load()) == 1


def test_an_upload_job_stopped_with_the_server_resumes_after_its_restart(
    settings, tiny_base, tmp_path: Path, monkeypatch
) -> None:
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    import rag.server.service as service_module
    from connectors.milvus import EncoderInfo, MilvusStore
    from rag.server import create_app
    from rag.settings import Settings

    def slowly(sources, *args, **kwargs):  # one item at a time, a moment each: the stop comes mid-job
        def paced():
            for source in sources:
                time.sleep(0.2)
                yield source

        return real_ingest(paced(), *args, **kwargs)

    real_ingest = service_module.ingest
    monkeypatch.setattr(service_module, "ingest", slowly)
    overrides = {"collection": "resumed", "data_dir": tmp_path / "data", "batch_size": 1, "server_drain_seconds": 0}
    changed = Settings(**{**settings.model_dump(), **overrides})
    MilvusStore.open(changed.milvus_uri, "resumed", encoder_info=EncoderInfo.of(tiny_base)).close()
    pictures = []
    for i in range(6):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32 + i), (40 * i, 90, 200 - 30 * i)).save(buffer, format="PNG")
        pictures.append(("files", (f"p{i}.png", buffer.getvalue(), "image/png")))
    with TestClient(create_app(changed, encoder=tiny_base)) as client:
        job_id = client.post("/api/ingest", files=pictures).json()["id"]
        until(lambda: client.get(f"/api/ingest/{job_id}").json()["added"] >= 1)
    # the app stopped as on SIGTERM (drain 0): the job is recorded as interrupted
    with TestClient(create_app(changed, encoder=tiny_base)) as client:
        until(lambda: client.get(f"/api/ingest/{job_id}").json()["status"] == "done", timeout=120)
        job = client.get(f"/api/ingest/{job_id}").json()
        assert (job["added"], job["unchanged"], job["resumed"]) == (6, 0, 1)
        assert client.get("/api/stats").json()["count"] == 6
    with TestClient(create_app(changed, encoder=tiny_base)) as client:  # and it stays queryable
        assert client.get(f"/api/ingest/{job_id}").json()["status"] == "done"


def test_a_stop_ends_an_ingest_after_the_batches_under_way_and_a_rerun_stores_the_rest(
    settings, tiny_base, tmp_path: Path
) -> None:
    from connectors.milvus import EncoderInfo, MilvusStore
    from connectors.sources import open_sources
    from rag.ingest import ingest
    from tests.ingest.test_pipeline import make_folder

    # read as one chunk, so the stop is seen between batches; at most 13 batches are under way (queued ahead) then
    folder = make_folder(tmp_path / "corpus", 20)
    stop = threading.Event()
    with MilvusStore.open(settings.milvus_uri, "stopped_early", encoder_info=EncoderInfo.of(tiny_base)) as store:
        first = ingest(
            open_sources([folder]), tiny_base, store, batch_size=1, on_progress=lambda r: stop.set(), cancel=stop
        )
        assert 1 <= first.added < 20 and store.count() == first.added  # the report says what is stored
        rest = ingest(open_sources([folder]), tiny_base, store, batch_size=8)
        assert (rest.added, rest.unchanged, store.count()) == (20 - first.added, first.added, 20)
