"""Ingest jobs kept on disk (SQLite, from the standard library), so that they outlive the server process.

Each job is one row: its status as clients see it, and what a restart needs to run it again (the uploaded files'
paths, the uploads refused, the names shown for them). A server that starts finds the jobs of its collection that
had not finished and runs them again: ingestion is idempotent, so items stored before the stop come back as
unchanged.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rag.items import SourceError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    job TEXT NOT NULL,
    paths TEXT NOT NULL,
    refused TEXT NOT NULL,
    names TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass
class JobRecord:
    """A job as recorded (``job``: its JSON, as clients see it), with what running it again takes."""

    id: str
    job: str
    created: float
    paths: list[Path]
    refused: list[SourceError]
    names: dict[str, str] = field(default_factory=dict)


class JobRecords:
    """The jobs of one collection in the SQLite file ``path`` (its folder made private: 0700)."""

    def __init__(self, path: Path, collection: str) -> None:
        self.path = path
        self.collection = collection
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._connect() as db:
            db.execute(_SCHEMA)
        os.chmod(path, 0o600)

    def add(self, record: JobRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    self.collection,
                    record.job,
                    json.dumps([str(p) for p in record.paths]),
                    json.dumps([e.model_dump(mode="json") for e in record.refused]),
                    json.dumps(record.names),
                    record.created,
                ),
            )

    def update(self, job_id: str, job: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET job = ? WHERE id = ?", (job, job_id))

    def load(self) -> list[JobRecord]:
        """The collection's jobs, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, job, created, paths, refused, names FROM jobs WHERE collection = ? ORDER BY created",
                (self.collection,),
            ).fetchall()
        return [
            JobRecord(
                job_id,
                job,
                created,
                [Path(p) for p in json.loads(paths)],
                [SourceError.model_validate(e) for e in json.loads(refused)],
                json.loads(names),
            )
            for job_id, job, created, paths, refused, names in rows
        ]

    def forget(self, job_ids: list[str]) -> None:
        with self._connect() as db:
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in job_ids])

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.path, timeout=30)
            try:
                with db:
                    yield db
            finally:
                db.close()
