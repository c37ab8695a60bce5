"""Ingest jobs: one at a time, progress visible while running, failures reported, stopped cleanly on shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from rag.ingest import IngestReport
from rag.items import Severity, SourceError
from rag.server import JobStatus
from rag.server.jobs import IngestJobs


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_jobs_run_in_order_report_progress_and_failures() -> None:
    release = threading.Event()
    running: list[int] = []

    def run(paths: list[Path], on_progress, stop: threading.Event) -> IngestReport:
        running.append(len(paths))
        if paths[0].name == "broken":
            raise RuntimeError("the store went away")
        on_progress(IngestReport(added=2, problems=[SourceError(source="b", reason="broken")]))
        release.wait(10)
        warning = SourceError(source="a", reason="no caption", severity=Severity.WARNING)
        return IngestReport(added=2, unchanged=1, problems=[warning])

    jobs = IngestJobs(run)
    refused = [SourceError(source="upload:x.txt", reason="not an image")]
    first = jobs.submit([Path("a"), Path("b")], refused)
    second = jobs.submit([Path("broken")], [])
    until(lambda: jobs.get(first.id).added == 2)
    assert jobs.get(first.id).status is JobStatus.RUNNING and jobs.get(first.id).problem_count == 2
    assert jobs.get(second.id).status is JobStatus.QUEUED and running == [2]
    release.set()
    until(lambda: jobs.get(second.id).status is JobStatus.FAILED)
    done = jobs.get(first.id)
    assert (done.status, done.added, done.unchanged, done.problem_count, done.skipped) == (JobStatus.DONE, 2, 1, 2, 1)
    assert [p.source for p in done.problems] == ["upload:x.txt", "a"]
    assert jobs.get(second.id).error == "RuntimeError: the store went away"
    assert [j.id for j in jobs.all()] == [second.id, first.id] and jobs.get("nope") is None
    jobs.close()


def test_close_stops_the_running_job_and_cancels_the_queue() -> None:
    started = threading.Event()

    def run(paths: list[Path], on_progress, stop: threading.Event) -> IngestReport:
        started.set()
        stop.wait(10)  # ingestion ends at its next batch once stop is set
        return IngestReport(added=1)

    jobs = IngestJobs(run)
    running = jobs.submit([Path("a")], [])
    queued = jobs.submit([Path("b")], [])
    assert started.wait(10)
    jobs.close()
    assert jobs.get(running.id).status is JobStatus.CANCELLED and jobs.get(running.id).added == 1
    assert jobs.get(queued.id).status is JobStatus.CANCELLED


def test_only_the_newest_finished_jobs_are_kept() -> None:
    jobs = IngestJobs(lambda paths, on_progress, stop: IngestReport(), keep=3)
    for _ in range(6):
        job = jobs.submit([Path("a")], [])
        until(lambda job=job: jobs.get(job.id).status is JobStatus.DONE)
    listed = jobs.all()
    assert len(listed) == 3 and listed[0].id == job.id
    jobs.close()
