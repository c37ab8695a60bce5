"""Streaming ingestion: source items → decoded images → vectors → Milvus, the three stages overlapped.

A reader thread pulls items from the sources, drops those already stored (same content id) and
decodes images on a small thread pool; the calling thread runs the encoder; a writer thread
upserts into the store. Bounded queues between the stages keep memory flat whatever the corpus
size. Bad input becomes a :class:`SourceError` in the report and never stops the run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from connectors.milvus import schema
from connectors.milvus.store import MilvusStore
from rag.embeddings.base import Encoder
from rag.items import KnowledgeItem, Severity, SourceError, SourceErrorKind

logger = logging.getLogger(__name__)

SourceResult = KnowledgeItem | SourceError
_DONE = object()


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
class _Batch:
    items: list[KnowledgeItem]
    pixels: list[torch.Tensor | None]  # one per item; None for text-only items


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
    batch_size: int = 16,
    decode_workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Embed and store every good item of ``sources``; idempotent and safe to re-run after a crash.

    ``on_progress(items_done, problems)`` is called after each written batch.
    """
    report = IngestReport()
    lock = threading.Lock()  # one store operation at a time across the reader and writer threads
    decoded: queue.Queue = queue.Queue(maxsize=2)
    encoded: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []
    stop = threading.Event()
    start = time.perf_counter()

    def problem(error: SourceError) -> None:
        with lock:
            report.problems.append(error)

    def read() -> None:
        versions = _Versions(store, lock)
        try:
            with ThreadPoolExecutor(decode_workers, thread_name_prefix="rag-decode") as pool:
                for chunk in _chunks(sources, batch_size):
                    if stop.is_set():
                        break
                    valid, items = _new_items(chunk, store, lock, report, problem)
                    batch = _decode(items, encoder, pool, problem)
                    # An item that failed to decode keeps its source's older version.
                    failed = {item.id for item in items} - {item.id for item in batch.items}
                    versions.see(item for item in valid if item.id not in failed)
                    if batch.items:
                        decoded.put(batch)
                if not stop.is_set():
                    versions.finish()
                report.replaced = versions.replaced
        except BaseException as e:  # surfaced in the caller's thread
            failure.append(e)
        finally:
            decoded.put(_DONE)

    def write() -> None:
        try:
            while (batch := encoded.get()) is not _DONE:
                with lock:
                    store.upsert(batch.items, batch.fused, batch.image)
                    report.added += len(batch.items)
                if on_progress:
                    on_progress(report.added, len(report.problems))
        except BaseException as e:
            failure.append(e)
            while encoded.get() is not _DONE:  # keep the encoder from blocking on a full queue
                pass

    reader = threading.Thread(target=read, name="rag-read", daemon=True)
    writer = threading.Thread(target=write, name="rag-write", daemon=True)
    reader.start()
    writer.start()
    batch: object = None
    try:
        while (batch := decoded.get()) is not _DONE and not failure:
            encoded.put(_encode(batch, encoder))
    finally:
        encoded.put(_DONE)
        writer.join()
        if batch is not _DONE:  # stopped early: tell the reader, and unblock it until it exits
            stop.set()
            while decoded.get() is not _DONE:
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


def _decode(
    items: list[KnowledgeItem], encoder: Encoder, pool: ThreadPoolExecutor, problem: Callable[[SourceError], None]
) -> _Batch:
    def one(item: KnowledgeItem) -> torch.Tensor | None | SourceError:
        if item.image is None:
            return None
        try:
            return encoder.preprocess([item.image.uri])[0]
        except (ValueError, OSError) as e:
            return SourceError(source=item.source, reason=str(e), kind=SourceErrorKind.CORRUPT_IMAGE)

    kept, pixels = [], []
    for item, result in zip(items, pool.map(one, items)):
        if isinstance(result, SourceError):
            problem(result)
        else:
            kept.append(item)
            pixels.append(result)
    return _Batch(kept, pixels)


def _encode(batch: _Batch, encoder: Encoder) -> _Encoded:
    """Fused and image vectors for every item: text-only items get their text vector as the fused one."""
    n = len(batch.items)
    fused = np.zeros((n, encoder.dim), dtype=np.float32)
    image = np.zeros((n, encoder.dim), dtype=np.float32)
    with_image = [i for i, p in enumerate(batch.pixels) if p is not None]
    text_only = [i for i, p in enumerate(batch.pixels) if p is None]
    if with_image:
        pixels = [batch.pixels[i] for i in with_image]
        texts = [batch.items[i].text for i in with_image]
        fused[with_image], image[with_image] = encoder.encode_fused_and_image(pixels, texts)
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
