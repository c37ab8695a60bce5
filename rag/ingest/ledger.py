"""The bookkeeping every ingestion engine shares: which items are new, what was written or lost, which older
versions to replace, and the report.

Engines differ only in where images are decoded and vectors computed; they hand the ledger each chunk
of source results (:meth:`Ledger.admit`), each input that failed later (:meth:`Ledger.failed`) and each
batch of vectors (:meth:`Ledger.write`, or :meth:`Ledger.written` where workers wrote it themselves),
then close the run with :meth:`Ledger.finish`. Every method may be called from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from itertools import islice
from typing import Any

import numpy as np

from connectors.milvus import schema
from connectors.milvus.catalog import LAST_INGEST
from connectors.milvus.store import MilvusStore
from rag.items import KnowledgeItem, SourceError, SourceErrorKind

from .names import Names
from .report import IngestReport

SourceResult = KnowledgeItem | SourceError


def chunks(sources: Iterable[SourceResult], size: int) -> Iterator[list[SourceResult]]:
    """The source results in lists of ``size`` (the last one shorter)."""
    iterator = iter(sources)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Ledger:
    """One run's account of a store: idempotency (content ids already stored are not embedded again),
    replacement of older versions, names unique in the collection (:class:`~rag.ingest.names.Names`), the
    problems met, progress, and the :class:`IngestReport`."""

    def __init__(self, store: MilvusStore, on_progress: Callable[[IngestReport], None] | None = None):
        self.store = store
        self.report = IngestReport()
        self._lock = threading.Lock()  # one store operation (and report update) at a time
        # A collection empty when the run starts holds no older versions and no names but this run's: nothing to
        # look up by source or name (each lookup costs the store a pass over its rows).
        stored_before = store.count() > 0
        self._versions = _Versions(store, stored_before=stored_before)
        self._names = Names(store, stored_before=stored_before)
        self._on_progress = on_progress
        self._start = time.perf_counter()
        self._started_at = time.time()  # wall clock, comparable with the times workers report

    def record_runtime(self, runtime: Mapping[str, Any]) -> None:
        """Record on the collection where and how the encoder ran (``rag stats`` shows it)."""
        with self._lock:
            self.store.set_properties({schema.INGEST_RUNTIME: dict(runtime)})

    def encoder_ready(self, at: float) -> None:
        """An encoder became ready to encode at wall-clock time ``at``; the first one ends the warm-up."""
        warmup = max(at - self._started_at, 0.0)
        with self._lock:
            if not self.report.warmup_seconds or warmup < self.report.warmup_seconds:
                self.report.warmup_seconds = warmup

    def admit(self, chunk: Sequence[SourceResult]) -> list[KnowledgeItem]:
        """The chunk's items still to embed, each named uniquely. Source errors and items the schema cannot hold
        are reported, items stored already are counted as unchanged, and every valid item is noted as its
        source's current version."""
        items, problems = [], [entry for entry in chunk if isinstance(entry, SourceError)]
        with self._lock:
            for item in self._names.assign([entry for entry in chunk if isinstance(entry, KnowledgeItem)]):
                if issues := schema.item_problems(item):
                    problems.append(
                        SourceError(source=item.source, reason="; ".join(issues), kind=SourceErrorKind.INVALID)
                    )
                else:
                    items.append(item)
            self.report.problems.extend(problems)
            present = self.store.existing_ids([item.id for item in items])
            self.report.unchanged += len(present)
            self._versions.see(items, present)
        new = [item for item in items if item.id not in present]
        if not new:
            self.progress()
        return new

    def failed(self, item: KnowledgeItem, reason: str) -> None:
        """An admitted item whose image could not be read: reported, and its source keeps its older version
        if this was all the run had from it."""
        with self._lock:
            self.report.problems.append(
                SourceError(source=item.source, reason=reason, kind=SourceErrorKind.CORRUPT_IMAGE)
            )
            self._versions.failed(item)

    def write(
        self, items: Sequence[KnowledgeItem], fused: np.ndarray, image: np.ndarray, *, encoded: bool = True
    ) -> None:
        """Upsert a batch of embedded items (by content id, so a batch written twice is stored once); ``encoded``:
        the encoder computed their vectors (False: they were taken from stored items of the same content)."""
        with self._lock:
            self.store.upsert(items, fused, image, new=True)  # admit() left out the ids stored already
            self.report.added += len(items)
            self.report.encoded += len(items) if encoded else 0
        self.progress()

    def written(self, count: int) -> None:
        """Count a batch that workers encoded and upserted into the store themselves."""
        with self._lock:
            self.report.added += count
            self.report.encoded += count
        self.progress()

    def progress(self) -> None:
        if self._on_progress:
            with self._lock:
                self._on_progress(self.report)

    def finish(self) -> IngestReport:
        """Replace older versions, rename the documents a new one's file name made ambiguous, flush and index
        the store, and time the run; call once, after every batch is written.

        A new version written in place of an older one counts as replaced, not added: ``added`` is left with
        the items that are new to the collection, ``removed`` with the older versions that no new one replaced."""
        with self._lock:
            deleted, new_versions = self._versions.finish()
            self.report.problems.extend(self._names.finish())
            self.report.replaced = new_versions
            self.report.removed = deleted - new_versions
            self.report.added -= new_versions
            self.report.indexing = True
        self.progress()
        with self._lock:
            self.store.flush()
            self.store.set_properties({LAST_INGEST: datetime.now(timezone.utc).isoformat()})
            self.report.indexing = False
        self.report.seconds = time.perf_counter() - self._start
        return self.report


class _Versions:
    """Older versions of items: a document's stored ids that this run no longer produces.

    A document is an item's ``ref_doc_id`` (a file our sources read, a LlamaIndex document, an upload): a
    re-ingest replaces that document's items and nothing else. Sources yield each document's items together
    (a folder's file, a PDF, a LlamaIndex ``Document``), so a document is complete when the next one starts;
    completed documents are compared with the store in groups. The stale ids are deleted when the run ends,
    after every new version is written, except for a document all of whose items in this run failed to
    decode: it keeps what it had. A document met again after it was compared (the same document given twice in
    one run) keeps what it had too: what this run produced of it before is no longer known.
    Without ``stored_before`` (the collection was empty when the run started) there is nothing to compare
    with: each comparison costs the store a pass over its rows, which a first ingest is spared.
    """

    GROUP = 1_000

    def __init__(self, store: MilvusStore, *, stored_before: bool = True):
        self._store = store
        self._stored_before = stored_before
        self._current: str | None = None
        self._open: dict[str, set[str]] = {}  # completed documents not compared yet: the ids this run produced
        self._new: dict[str, set[str]] = {}  # the same documents: their ids not stored before this run
        # document: (stale ids, how many ids this run produced, the new ids among them)
        self._stale: dict[str, tuple[set[str], int, set[str]]] = {}
        self._failed: dict[str, set[str]] = {}
        self._compared: set[str] = set()
        self._met_again: set[str] = set()

    def see(self, items: Iterable[KnowledgeItem], present: set[str]) -> None:
        for item in items:
            document = item.ref_doc_id or item.source
            if document != self._current:
                self._current = document
                if len(self._open) >= self.GROUP and document not in self._open:
                    self._compare()
                if document in self._compared:
                    self._met_again.add(document)
            self._open.setdefault(document, set()).add(item.id)
            new = self._new.setdefault(document, set())
            if item.id not in present:
                new.add(item.id)

    def failed(self, item: KnowledgeItem) -> None:
        self._failed.setdefault(item.ref_doc_id or item.source, set()).add(item.id)

    def finish(self) -> tuple[int, int]:
        """Delete the stale ids. Returns how many were deleted, and how many of the items written took the
        place of one of them (a document's new versions, up to the number of its stale ones)."""
        self._compare()
        stale: list[str] = []
        new_versions = 0
        for document, (ids, produced, new) in self._stale.items():
            failed = self._failed.get(document, set())
            if len(failed) < produced and document not in self._met_again:
                stale.extend(ids)
                new_versions += min(len(new - failed), len(ids))
        return (self._store.delete(ids=stale) if stale else 0), new_versions

    def _compare(self) -> None:
        stored = self._store.ids_by_document(list(self._open)) if self._open and self._stored_before else {}
        for document, ids in stored.items():
            if stale := ids - self._open[document]:
                before, produced, new = self._stale.get(document, (set(), 0, set()))
                self._stale[document] = (
                    before | stale,
                    produced + len(self._open[document]),
                    new | self._new[document],
                )
        self._compared.update(self._open)
        self._open.clear()
        self._new.clear()
