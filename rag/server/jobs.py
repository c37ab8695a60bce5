"""Background ingestion: jobs run one at a time on a worker thread, and their progress can be polled."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field

from rag.ingest import IngestReport
from rag.items import SourceError

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
    CANCELLED = "cancelled"  # the server stopped before the job finished


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
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    started_at: datetime | None = None
    finished_at: datetime | None = None


class IngestJobs:
    """Queued ingest jobs, run in order on one worker thread; the last ``keep`` jobs stay listed."""

    def __init__(self, run: IngestRun, *, keep: int = 100) -> None:
        self._run = run
        self._keep = keep
        self._jobs: dict[str, IngestJob] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-ingest-job")

    def submit(
        self,
        paths: list[Path],
        refused: list[SourceError],
        names: Mapping[str, str] | None = None,
        on_done: Callable[[IngestJob], None] | None = None,
        tenant: str | None = None,
        run: IngestRun | None = None,
    ) -> IngestJob:
        """Queue the ingestion of ``paths``; ``refused`` are uploads turned away already, reported with the job.

        ``names`` (path → name) renames the job's problems about those paths (``path:line`` and ``path#…`` too),
        so that the job does not show where the server keeps them. ``on_done`` gets the finished job (done,
        failed or cancelled), e.g. for the audit log. ``tenant`` is shown with the job; ``run`` ingests this job
        instead of the jobs' own run.
        """
        job = IngestJob(id=uuid.uuid4().hex, inputs=len(paths), problem_count=len(refused), tenant=tenant)
        job.skipped = len(refused)
        job.problems = refused[:MAX_LISTED_PROBLEMS]
        with self._lock:
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.status not in (JobStatus.QUEUED, JobStatus.RUNNING)]
            for old in finished[: max(0, len(self._jobs) - self._keep)]:
                del self._jobs[old]
            snapshot = job.model_copy(deep=True)
        self._worker.submit(self._finish, job, paths, refused, names or {}, on_done, run or self._run)
        return snapshot

    def get(self, job_id: str) -> IngestJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.model_copy(deep=True) if job else None

    def all(self) -> list[IngestJob]:
        """Every listed job, newest first."""
        with self._lock:
            return [job.model_copy(deep=True) for job in reversed(self._jobs.values())]

    def close(self) -> None:
        """Stop the running job at its next batch, cancel queued ones, and wait for the worker."""
        self._stop.set()
        self._worker.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for job in self._jobs.values():
                if job.status is JobStatus.QUEUED:
                    job.status, job.finished_at = JobStatus.CANCELLED, datetime.now(timezone.utc)

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
            job.status, job.started_at = JobStatus.RUNNING, datetime.now(timezone.utc)

        def on_progress(progress: IngestReport) -> None:
            with self._lock:
                job.added, job.problem_count = progress.added, len(refused) + len(progress.problems)

        try:
            report = run(paths, on_progress, self._stop) if paths else IngestReport()
        except Exception as e:  # reported in the job's status; the worker goes on with the next job
            logger.exception("ingest job %s failed", job.id)
            with self._lock:
                job.status, job.error = JobStatus.FAILED, f"{type(e).__name__}: {e}"
                job.finished_at = datetime.now(timezone.utc)
            return
        problems = refused + [_renamed(problem, names) for problem in report.problems]
        with self._lock:
            job.added, job.unchanged, job.replaced = report.added, report.unchanged, report.replaced
            job.removed = report.removed
            job.problem_count, job.skipped = len(problems), len(refused) + len(report.skipped)
            job.problems = problems[:MAX_LISTED_PROBLEMS]
            job.status = JobStatus.CANCELLED if self._stop.is_set() else JobStatus.DONE
            job.finished_at = datetime.now(timezone.utc)
        logger.info("ingest job %s %s: %s", job.id, job.status.value, report.summary())


def _renamed(problem: SourceError, names: Mapping[str, str]) -> SourceError:
    """``problem`` with the path it starts with replaced by that path's name in ``names``."""
    for path, name in names.items():
        if problem.source == path or problem.source.startswith((path + ":", path + "#")):
            return problem.model_copy(update={"source": name + problem.source[len(path) :]})
    return problem
