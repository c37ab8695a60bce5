"""Streaming ingestion: source items → prepared images → vectors → Milvus, the stages overlapped.

A reader thread pulls items from the sources, drops those already stored (same content id) and
hands each new image to the encoder's preprocessing workers (``rag.embeddings.preprocess``: one
per core by default) without waiting for them; the calling thread collects the prepared images, batch
by batch, and runs the encoder; a writer thread upserts into the store. Bounded queues between
the stages keep memory flat whatever the corpus size, and the workers always have the next batches
to decode while the model computes. Bad input becomes a :class:`SourceError` in the report and
never stops the run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from connectors.milvus import schema
from connectors.milvus.store import MilvusStore
from rag.embeddings.base import Encoder
from rag.embeddings.inputs import ImageLoadError, PreparedImage
from rag.embeddings.preprocess import PendingImages
from rag.items import KnowledgeItem, Severity, SourceError, SourceErrorKind

logger = logging.getLogger(__name__)

SourceResult = KnowledgeItem | SourceError
_DONE = object()
#: Batches whose images are being prepared ahead of the one the model is on.
_BATCHES_AHEAD = 3


@dataclass
class IngestReport:
    """What a run did: items written, items already present, stale versions replaced, problems met."""

    added: int = 0
    unchanged: int = 0
    replaced: int = 0
    problems: list[SourceError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def skipped(self) -> list[SourceError]:
        """Problems that cost an input (as opposed to warnings)."""
        return [p for p in self.problems if p.severity == Severity.ERROR]

    @property
    def processed(self) -> int:
        """Inputs dealt with so far: added, already present, or skipped."""
        return self.added + self.unchanged + len(self.skipped)

    @property
    def items_per_second(self) -> float:
        return self.added / self.seconds if self.seconds else 0.0

    def write_jsonl(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for problem in self.problems:
                f.write(problem.model_dump_json() + "\n")

    def summary(self) -> dict[str, object]:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "replaced": self.replaced,
            "skipped": len(self.skipped),
            "warnings": len(self.problems) - len(self.skipped),
            "seconds": round(self.seconds, 2),
            "items_per_second": round(self.items_per_second, 2),
        }


@dataclass
class _Pending:
    """A chunk of source results on its way to the encoder: its valid items, the new ones, their images in preparation."""

    valid: list[KnowledgeItem]
    items: list[KnowledgeItem]
    images: PendingImages  # of the new items that have an image, in order


@dataclass
class _Batch:
    items: list[KnowledgeItem]
    images: list[PreparedImage | None]  # one per item; None for text-only items


@dataclass
class _Encoded:
    items: list[KnowledgeItem]
    fused: np.ndarray
    image: np.ndarray


def ingest(
    sources: Iterable[SourceResult],
    encoder: Encoder,
    store: MilvusStore,
    *,
    batch_size: int | None = None,
    on_progress: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Embed and store every good item of ``sources``; idempotent and safe to re-run after a crash.

    ``batch_size`` defaults to the encoder's (``encoder.runtime``); images are prepared by the
    encoder's preprocessing stage. ``on_progress(report)`` is called, with the report so far,
    after each batch of inputs has been dealt with.
    """
    batch_size = batch_size or encoder.runtime.batch_size
    report = IngestReport()
    lock = threading.Lock()  # one store operation (and report update) at a time across the threads
    pending: queue.Queue = queue.Queue(maxsize=_BATCHES_AHEAD)
    encoded: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []
    stop = threading.Event()
    preprocessor = encoder.preprocessor
    versions = _Versions(store, lock)
    start = time.perf_counter()
    store.set_properties({schema.INGEST_RUNTIME: encoder.runtime.to_dict()})

    def problem(error: SourceError) -> None:
        with lock:
            report.problems.append(error)

    def progress() -> None:
        if on_progress:
            with lock:
                on_progress(report)

    def read() -> None:
        try:
            for chunk in _chunks(sources, batch_size):
                if stop.is_set():
                    break
                valid, items = _new_items(chunk, store, lock, report, problem)
                images = preprocessor.submit([item.image.uri for item in items if item.image is not None])
                pending.put(_Pending(valid, items, images))
        except BaseException as e:  # surfaced in the caller's thread
            failure.append(e)
        finally:
            pending.put(_DONE)

    def write() -> None:
        try:
            while (batch := encoded.get()) is not _DONE:
                with lock:
                    store.upsert(batch.items, batch.fused, batch.image)
                    report.added += len(batch.items)
                progress()
        except BaseException as e:
            failure.append(e)
            while encoded.get() is not _DONE:  # keep the encoder from blocking on a full queue
                pass

    reader = threading.Thread(target=read, name="rag-read", daemon=True)
    writer = threading.Thread(target=write, name="rag-write", daemon=True)
    reader.start()
    writer.start()
    chunk: object = None
    try:
        while (chunk := pending.get()) is not _DONE and not failure:
            batch, failed = _collect(chunk, problem)  # type: ignore[arg-type]
            # An item that failed to decode keeps its source's older version.
            versions.see(item for item in chunk.valid if item.id not in failed)  # type: ignore[union-attr]
            if batch.items:
                encoded.put(_encode(batch, encoder))
            else:
                progress()
        if chunk is _DONE and not failure:
            versions.finish()
            report.replaced = versions.replaced
    finally:
        encoded.put(_DONE)
        writer.join()
        if chunk is not _DONE:  # stopped early: tell the reader, and unblock it until it exits
            stop.set()
            while pending.get() is not _DONE:
                pass
        reader.join()
    if failure:
        raise failure[0]
    with lock:
        store.flush()
    report.seconds = time.perf_counter() - start
    return report


def _chunks(sources: Iterable[SourceResult], size: int) -> Iterator[list[SourceResult]]:
    iterator = iter(sources)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _new_items(
    chunk: Sequence[SourceResult],
    store: MilvusStore,
    lock: threading.Lock,
    report: IngestReport,
    problem: Callable[[SourceError], None],
) -> tuple[list[KnowledgeItem], list[KnowledgeItem]]:
    """The items of a chunk valid for the schema, and those of them not stored already."""
    items = []
    for entry in chunk:
        if isinstance(entry, SourceError):
            problem(entry)
        elif issues := schema.item_problems(entry):
            problem(SourceError(source=entry.source, reason="; ".join(issues), kind=SourceErrorKind.INVALID))
        else:
            items.append(entry)
    with lock:
        present = store.existing_ids([item.id for item in items])
        report.unchanged += len(present)
    return items, [item for item in items if item.id not in present]


def _collect(chunk: _Pending, problem: Callable[[SourceError], None]) -> tuple[_Batch, set[str]]:
    """The chunk's new items whose images were prepared (or that have none), and the ids of those that
    failed, each failure reported."""
    kept, images, failed = [], [], set()
    prepared = iter(chunk.images.results())
    for item in chunk.items:
        result = next(prepared) if item.image is not None else None
        if isinstance(result, ImageLoadError):
            problem(SourceError(source=item.source, reason=str(result), kind=SourceErrorKind.CORRUPT_IMAGE))
            failed.add(item.id)
        else:
            kept.append(item)
            images.append(result)
    return _Batch(kept, images), failed


def _encode(batch: _Batch, encoder: Encoder) -> _Encoded:
    """Fused and image vectors for every item: text-only items get their text vector as the fused one."""
    n = len(batch.items)
    fused = np.zeros((n, encoder.dim), dtype=np.float32)
    image = np.zeros((n, encoder.dim), dtype=np.float32)
    with_image = [i for i, p in enumerate(batch.images) if p is not None]
    text_only = [i for i, p in enumerate(batch.images) if p is None]
    if with_image:
        images = [batch.images[i] for i in with_image]
        texts = [batch.items[i].text for i in with_image]
        fused[with_image], image[with_image] = encoder.encode_fused_and_image(images, texts)  # type: ignore[arg-type]
    if text_only:
        fused[text_only] = encoder.encode_text([batch.items[i].text for i in text_only])
    return _Encoded(batch.items, fused, image)


class _Versions:
    """Replaces older versions of items: a source's stored ids that this run no longer produces.

    Sources yield each source's items together (a folder's file, a manifest's rows, a PDF page),
    so a source is complete when the next one starts; completed sources are settled in groups.
    """

    GROUP = 256

    def __init__(self, store: MilvusStore, lock: threading.Lock):
        self._store = store
        self._lock = lock
        self._current: str | None = None
        self._done: dict[str, set[str]] = {}
        self.replaced = 0

    def see(self, items: Iterable[KnowledgeItem]) -> None:
        for item in items:
            if item.source != self._current:
                self._current = item.source
                if len(self._done) >= self.GROUP and item.source not in self._done:
                    self._settle()
            self._done.setdefault(item.source, set()).add(item.id)

    def finish(self) -> None:
        self._settle()

    def _settle(self) -> None:
        with self._lock:
            stored = self._store.ids_by_source(list(self._done))
            stale = [i for source, ids in stored.items() for i in ids - self._done[source]]
            if stale:
                self.replaced += self._store.delete(ids=stale)
        self._done.clear()
