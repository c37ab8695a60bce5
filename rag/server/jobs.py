"""Background ingestion: jobs run one at a time on a worker thread, and their progress can be polled."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field

from connectors.sources.ocr import OcrMode
from rag.ingest import IngestReport
from rag.items import SourceError

from .job_records import JobRecord, JobRecords

logger = logging.getLogger(__name__)

#: Problems listed in a job's status; the counts cover all of them.
MAX_LISTED_PROBLEMS = 100

#: ``run(paths, on_progress, stop)`` ingests the paths and returns the report; it ends early once ``stop`` is set.
IngestRun = Callable[[list[Path], Callable[[IngestReport], None], threading.Event], IngestReport]


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the server stopped before the job finished (jobs kept in memory only)
    INTERRUPTED = "interrupted"  # the server stopped before the job finished; it resumes when the server starts


class IngestJob(BaseModel):
    """One upload's ingestion: its status, what it wrote so far, and the problems met."""

    id: str
    status: JobStatus = JobStatus.QUEUED
    inputs: int = Field(description="Image files and manifests received (refused uploads not counted).")
    added: int = 0
    unchanged: int = Field(default=0, description="Items stored already (same content).")
    replaced: int = Field(default=0, description="Stored items whose new version (a changed caption) took their place.")
    removed: int = Field(default=0, description="Stored items of re-uploaded sources removed without a new version.")
    problem_count: int = Field(default=0, description="Problems met so far: refused uploads, bad rows, warnings.")
    skipped: int = Field(default=0, description="Of the problems, those that cost an input (known when done).")
    problems: list[SourceError] = Field(default_factory=list, description=f"The first {MAX_LISTED_PROBLEMS} problems.")
    error: str | None = Field(default=None, description="Why the job failed, when it did.")
    tenant: str | None = Field(default=None, description="The tenant its items belong to (none: the default).")
    ocr: OcrMode | None = Field(
        default=None, description="When its files were read with OCR (none: the server's RAG_OCR)."
    )
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    resumed: int = Field(default=0, description="Times the job was started again after a server restart.")

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class IngestJobs:
    """Queued ingest jobs, run in order on one worker thread; the last ``keep`` jobs stay listed.

    With ``records``, every job is kept on disk as it goes: ``resume()`` lists the recorded jobs and runs again
    those a stop interrupted, and ``close()`` lets the running jobs finish for up to ``drain`` seconds first."""

    def __init__(
        self,
        run: IngestRun,
        *,
        keep: int = 100,
        records: JobRecords | None = None,
        drain: float = 0.0,
        run_for: Callable[[IngestJob], IngestRun] | None = None,
    ) -> None:
        self._run = run
        self._run_for = run_for  # the run of a resumed job, as it was asked for (None: the jobs' own run)
        self._keep = keep
        self._records = records
        self._drain = drain
        self._jobs: dict[str, IngestJob] = {}
        self._pending: list[Future[None]] = []
        self.items_added = 0  # by the jobs run since this object was made
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-ingest-job")

    def resume(self) -> int:
        """List the recorded jobs, and queue again those that had not finished; returns how many."""
        if self._records is None:
            return 0
        resumed = 0
        for record in self._records.load():
            job = IngestJob.model_validate_json(record.job)
            if not job.finished:
                job.status, job.resumed = JobStatus.QUEUED, job.resumed + 1
                resumed += 1
            with self._lock:
                self._jobs[job.id] = job
                self._trim()
            if not job.finished:
                run = self._run_for(job) if self._run_for is not None else self._run
                self._save(job)
                self._pending.append(
                    self._worker.submit(self._finish, job, record.paths, record.refused, record.names, None, run)
                )
        if resumed:
            logger.warning("resuming %d ingest job(s) a stop interrupted", resumed)
        return resumed

    def submit(
        self,
        paths: list[Path],
        refused: list[SourceError],
        names: Mapping[str, str] | None = None,
        on_done: Callable[[IngestJob], None] | None = None,
        tenant: str | None = None,
        run: IngestRun | None = None,
        ocr: OcrMode | None = None,
    ) -> IngestJob:
        """Queue the ingestion of ``paths``; ``refused`` are uploads turned away already, reported with the job.

        ``names`` (path → name) renames the job's problems about those paths (``path:line`` and ``path#…`` too),
        so that the job does not show where the server keeps them. ``on_done`` gets the finished job (done,
        failed or cancelled), e.g. for the audit log. ``tenant`` and ``ocr`` are shown with the job; ``run`` ingests
        this job instead of the jobs' own run.
        """
        job = IngestJob(id=uuid.uuid4().hex, inputs=len(paths), problem_count=len(refused), tenant=tenant, ocr=ocr)
        job.skipped = len(refused)
        job.problems = refused[:MAX_LISTED_PROBLEMS]
        with self._lock:
            self._jobs[job.id] = job
            self._trim()
            snapshot = job.model_copy(deep=True)
        if self._records is not None:
            created = job.created_at.timestamp()
            self._records.add(JobRecord(job.id, job.model_dump_json(), created, paths, refused, dict(names or {})))
        self._pending.append(
            self._worker.submit(self._finish, job, paths, refused, names or {}, on_done, run or self._run)
        )
        return snapshot

    def _trim(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.finished]
        gone = finished[: max(0, len(self._jobs) - self._keep)]
        for old in gone:
            del self._jobs[old]
        if gone and self._records is not None:
            self._records.forget(gone)

    def _save(self, job: IngestJob) -> None:
        if self._records is not None:
            self._records.update(job.id, job.model_dump_json())

    def get(self, job_id: str) -> IngestJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.model_copy(deep=True) if job else None

    def all(self) -> list[IngestJob]:
        """Every listed job, newest first."""
        with self._lock:
            return [job.model_copy(deep=True) for job in reversed(self._jobs.values())]

    def close(self) -> None:
        """Let the jobs run for up to ``drain`` seconds, then stop the running one at its next batch and wait for
        it; what is left is recorded as interrupted (resumed at the next start), or cancelled without records."""
        pending = [f for f in self._pending if not f.done()]
        if pending and self._drain > 0:
            logger.info("letting %d ingest job(s) finish, for %g s at most", len(pending), self._drain)
            wait(pending, timeout=self._drain)
        self._stop.set()
        self._worker.shutdown(wait=True, cancel_futures=True)
        left = JobStatus.INTERRUPTED if self._records is not None else JobStatus.CANCELLED
        with self._lock:
            stopped = [job for job in self._jobs.values() if job.status in (JobStatus.QUEUED, JobStatus.RUNNING)]
            for job in stopped:
                job.status = left
                if left is JobStatus.CANCELLED:
                    job.finished_at = datetime.now(timezone.utc)
                self._save(job)
        interrupted = [job.id for job in self._jobs.values() if job.status is JobStatus.INTERRUPTED]
        if interrupted:
            logger.warning(
                "%d ingest job(s) interrupted, resumed at the next start: %s", len(interrupted), ", ".join(interrupted)
            )

    def _finish(
        self,
        job: IngestJob,
        paths: list[Path],
        refused: list[SourceError],
        names: Mapping[str, str],
        on_done: Callable[[IngestJob], None] | None,
        run: IngestRun,
    ) -> None:
        self._execute(job, paths, refused, names, run)
        if on_done is not None:
            try:
                on_done(self.get(job.id) or job)
            except Exception:  # the job's outcome stands; the log says what its follow-up missed
                logger.exception("after ingest job %s", job.id)

    def _execute(
        self, job: IngestJob, paths: list[Path], refused: list[SourceError], names: Mapping[str, str], run: IngestRun
    ) -> None:
        with self._lock:
            if self._stop.is_set():  # queued when the stop came
                return
            job.status, job.started_at = JobStatus.RUNNING, datetime.now(timezone.utc)
            before = job.added  # stored by the runs a stop interrupted: unchanged to this one
            self._save(job)

        def on_progress(progress: IngestReport) -> None:
            with self._lock:
                self.items_added += before + progress.added - job.added
                job.added, job.problem_count = before + progress.added, len(refused) + len(progress.problems)
                self._save(job)

        try:
            report = run(paths, on_progress, self._stop) if paths else IngestReport()
        except Exception as e:  # reported in the job's status; the worker goes on with the next job
            logger.exception("ingest job %s failed", job.id)
            with self._lock:
                job.status, job.error = JobStatus.FAILED, f"{type(e).__name__}: {e}"
                job.finished_at = datetime.now(timezone.utc)
                self._save(job)
            return
        problems = refused + [_renamed(problem, names) for problem in report.problems]
        with self._lock:
            self.items_added += before + report.added - job.added
            job.added, job.replaced = before + report.added, report.replaced
            job.unchanged = max(0, report.unchanged - before)
            job.removed = report.removed
            job.problem_count, job.skipped = len(problems), len(refused) + len(report.skipped)
            job.problems = problems[:MAX_LISTED_PROBLEMS]
            if not self._stop.is_set():
                job.status, job.finished_at = JobStatus.DONE, datetime.now(timezone.utc)
            elif self._records is None:
                job.status, job.finished_at = JobStatus.CANCELLED, datetime.now(timezone.utc)
            else:
                job.status = JobStatus.INTERRUPTED
            self._save(job)
        logger.info("ingest job %s %s: %s", job.id, job.status.value, report.summary())


def _renamed(problem: SourceError, names: Mapping[str, str]) -> SourceError:
    """``problem`` with the path it starts with replaced by that path's name in ``names``."""
    for path, name in names.items():
        if problem.source == path or problem.source.startswith((path + ":", path + "#")):
            return problem.model_copy(update={"source": name + problem.source[len(path) :]})
    return problem
