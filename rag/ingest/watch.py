"""``rag ingest --watch``: keep a collection in step with folders and files while they change.

``watchfiles`` (the OS's own notifications, through Rust's ``notify``) groups changes: a batch comes once no change
arrived for ``step`` ms, at most ``debounce`` ms after the first. Each batch is applied as a prune scoped to the
paths it names: files created or changed are read as part of their folder (named as a whole-folder ingest names
them) and ingested, their new versions written before the old ones go; files deleted or moved away lose their items;
a folder moved in is read whole. A file written to within the last ``quiet_seconds`` waits for a later batch (an
empty one comes every second), so a file still being written is not read half-done; a writer that pauses longer
mid-file should write to a temporary name and rename it. The store is the shared one: ``rag serve`` on the
collection sees each batch as it lands.

A watch writes for one tenant (``tenant``; None: the default one), as ``rag ingest --tenant`` does: its items are
tagged with it, and a changed or deleted path whose stored items are another tenant's is reported and left alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import watchfiles

from connectors.milvus.store import MilvusStore
from connectors.sources import SourceOptions, iter_folder, open_sources
from connectors.sources._common import IMAGE_SUFFIXES
from connectors.sources.images import SIDECAR_SUFFIXES
from rag.access.tenants import tagged
from rag.embeddings.base import Encoder
from rag.errors import RagError
from rag.items import DEFAULT_TENANT, Severity, SourceError

from .ledger import SourceResult
from .pipeline import ingest
from .report import IngestReport
from .sync import Pruning, Scope
from .tenancy import foreign_sources, kept_out


class WatchError(RagError, ValueError):
    """Something ``--watch`` cannot watch (a URL, a path that is not there)."""


@dataclass
class WatchTotals:
    """What a watch did so far, batch after batch."""

    batches: int = 0
    added: int = 0
    replaced: int = 0
    removed: int = 0
    encoded: int = 0
    problems: list[SourceError] = field(default_factory=list)

    def count(self, report: IngestReport) -> None:
        self.batches += 1
        self.added += report.added
        self.replaced += report.replaced
        self.removed += report.removed
        self.encoded += report.encoded
        self.problems.extend(report.problems)

    def summary(self) -> dict[str, object]:
        errors = [p for p in self.problems if p.severity is Severity.ERROR]
        return {
            "batches": self.batches,
            "added": self.added,
            "replaced": self.replaced,
            "removed": self.removed,
            "encoded": self.encoded,
            "skipped": len(errors),
            "failed": [{"source": p.source, "kind": p.kind.value, "reason": p.reason} for p in errors],
        }


class Watcher:
    """Applies the changes under ``sources`` (folders and files) to ``store`` until stopped."""

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str]],
        encoder: Encoder,
        store: MilvusStore,
        options: SourceOptions,
        *,
        debounce_ms: int = 1_600,
        step_ms: int = 300,
        quiet_seconds: float = 1.0,
        tenant: str | None = None,
    ) -> None:
        self.folders: list[Path] = []
        self.files: list[Path] = []
        for source in (os.fspath(given) for given in sources):
            if source.lower().startswith(("http://", "https://")):
                raise WatchError(f"a watch follows folders and files, not URLs: {source}")
            path = Path(source).expanduser().absolute()
            if not path.exists():
                raise WatchError(f"no such file or folder to watch: {source}")
            (self.folders if path.is_dir() else self.files).append(path)
        self.encoder, self.store, self.options, self.tenant = encoder, store, options, tenant
        self.debounce_ms, self.step_ms, self.quiet_seconds = debounce_ms, step_ms, quiet_seconds
        self.totals = WatchTotals()
        self._pending: set[str] = set()  # changed, but written to too recently: tried again at the next batch

    def run(
        self,
        stop: threading.Event | None = None,
        on_batch: Callable[[IngestReport, list[str]], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> WatchTotals:
        """Watch until ``stop`` is set or Ctrl-C; ``on_batch(report, paths)`` after each batch is applied,
        ``on_ready()`` once the watch is set up (changes from then on are seen)."""
        watched = [str(path) for path in (*self.folders, *self.files)]
        changes = watchfiles.watch(
            *watched,
            debounce=self.debounce_ms,
            step=self.step_ms,
            stop_event=stop,
            raise_interrupt=False,
            yield_on_timeout=True,  # an empty batch once set up: the watch is ready
            rust_timeout=1_000,
        )
        for batch in changes:  # an empty batch every second without changes: pending files are tried again
            if on_ready is not None:
                on_ready()
                on_ready = None
            paths = sorted(self._pending | {path for _, path in batch})
            if not paths:
                continue
            report = self.apply(paths)
            if report is not None:
                self.totals.count(report)
                if on_batch is not None:
                    on_batch(report, paths)
        return self.totals

    def apply(self, changed: Sequence[str]) -> IngestReport | None:
        """Bring the store in step with these paths (created, changed or gone); None when none had settled yet
        (those written to in the last ``quiet_seconds`` wait for the next batch)."""
        now = time.time()
        paths = [path for path in changed if now - _modified(path) >= self.quiet_seconds]
        self._pending = set(changed) - set(paths)
        if not paths:
            return None
        wanted = set(paths)
        for path in paths:
            if os.path.isdir(path):  # a folder moved in: every file under it
                wanted.update(str(Path(root) / name) for root, _, names in os.walk(path) for name in names)
            partner = Path(path)
            if partner.suffix.lower() in SIDECAR_SUFFIXES:
                wanted.update(str(partner.with_suffix(suffix)) for suffix in IMAGE_SUFFIXES)
        gone_folders = tuple(path for path in paths if not os.path.exists(path))  # a folder deleted: all under it
        pruning = Pruning(self.store, [], yes=True, scope=Scope(gone_folders, tuple(sorted(wanted))))
        tenant = self.tenant or DEFAULT_TENANT
        foreign = foreign_sources(self.store, pruning.stored.ids, tenant)
        pruning.leave(foreign)
        results = tagged(kept_out(self._read(wanted), foreign, tenant), self.tenant)
        report = ingest(pruning.watch(results), self.encoder, self.store, donors=pruning.donors(self.store))
        pruning.finish(self.store, report)
        return report

    def _read(self, wanted: set[str]) -> Iterator[SourceResult]:
        folders = (
            iter_folder(folder, self.options, only=wanted)
            for folder in self.folders
            if any(path.startswith(str(folder) + os.sep) for path in wanted)
        )
        files = [file for file in self.files if str(file) in wanted and file.is_file()]
        return chain(chain.from_iterable(folders), open_sources(files, **self.options.model_dump()) if files else ())


def _modified(path: str) -> float:
    """When ``path`` was last written to (0 when it is gone: nothing to wait for)."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
