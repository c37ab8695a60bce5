"""The local engine: source items → prepared images → vectors → Milvus, the stages overlapped in one process.

A reader thread pulls items from the sources (lending them the preprocessing workers for their slow work, the OCR
of scanned pages: ``connectors.sources.later``), has the :class:`~rag.ingest.ledger.Ledger` drop those
already stored (same content id) and hands each new image to the encoder's preprocessing stage
(``rag.embeddings.preprocess``: one worker per core by default) without waiting for it; the calling
thread collects the prepared images, batch by batch, and runs the encoder; a writer thread upserts into
the store. Bounded queues between the stages keep memory flat whatever the corpus size, and the workers
always have the next batches to decode while the model computes. Bad input becomes a
:class:`SourceError` in the report and never stops the run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from connectors.milvus.store import MilvusStore
from connectors.sources.later import lent_workers
from rag.embeddings.base import Encoder
from rag.embeddings.inputs import ImageLoadError, PreparedImage
from rag.embeddings.preprocess import PendingImages, Preprocessor
from rag.items import KnowledgeItem

from .encode import encode_batch
from .ledger import Ledger, SourceResult, chunks
from .report import IngestReport

if TYPE_CHECKING:
    from .sync import Donors

logger = logging.getLogger(__name__)

_DONE = object()
#: Batches whose images are being prepared ahead of the one the model is on.
_BATCHES_AHEAD = 3
#: Encoded batches waiting for the writer, which upserts those waiting together, up to _WRITE_ROWS items.
_ENCODED_AHEAD = 8
_WRITE_ROWS = 1_024
#: Source results the reader checks against the store at once (one query for the ids already stored).
_ADMIT_ROWS = 512


@dataclass
class _Pending:
    """New items on their way to the encoder, their images in preparation."""

    items: list[KnowledgeItem]
    images: PendingImages  # of the items that have an image, in order


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
    donors: Donors | None = None,
    cancel: threading.Event | None = None,
) -> IngestReport:
    """Embed and store every good item of ``sources``; idempotent and safe to re-run after a crash.

    ``batch_size`` defaults to the encoder's (``encoder.runtime``); images are prepared by the
    encoder's preprocessing stage. ``on_progress(report)`` is called, with the report so far,
    after each batch of inputs has been dealt with. ``donors``: stored items whose vectors new items of the same
    content take instead of being encoded (the files a prune found gone: renamed or moved). ``cancel``: once set,
    no new batch is started; the few under way are stored, and the report says what was (a re-run does the rest).
    """
    batch_size = batch_size or encoder.runtime.batch_size
    ledger = Ledger(store, on_progress)
    pending: queue.Queue = queue.Queue(maxsize=_BATCHES_AHEAD)
    encoded: queue.Queue = queue.Queue(maxsize=_ENCODED_AHEAD)
    failure: list[BaseException] = []
    stop = threading.Event()
    preprocessor = encoder.preprocessor
    ledger.record_runtime(encoder.runtime.to_dict())

    admit = _admitter(ledger, donors)

    def read() -> None:
        try:
            for chunk in chunks(sources, max(batch_size, _ADMIT_ROWS)):
                admitted = admit(chunk)
                for start in range(0, len(admitted), batch_size):
                    if stop.is_set() or (cancel is not None and cancel.is_set()):
                        return
                    items = admitted[start : start + batch_size]
                    images = preprocessor.submit([item.image.uri for item in items if item.image is not None])
                    pending.put(_Pending(items, images))
        except BaseException as e:  # surfaced in the caller's thread
            failure.append(e)
        finally:
            pending.put(_DONE)

    def write() -> None:
        try:
            while batches := _waiting(encoded):
                ledger.write(
                    [item for b in batches for item in b.items],
                    np.concatenate([b.fused for b in batches]),
                    np.concatenate([b.image for b in batches]),
                )
        except BaseException as e:
            failure.append(e)
            while encoded.get() is not _DONE:  # keep the encoder from blocking on a full queue
                pass

    reader = threading.Thread(target=_lending(read, preprocessor), name="rag-read", daemon=True)
    writer = threading.Thread(target=write, name="rag-write", daemon=True)
    reader.start()
    writer.start()
    chunk: object = None
    try:
        while (chunk := pending.get()) is not _DONE and not failure:
            items, images = _collect(chunk, ledger)  # type: ignore[arg-type]
            if items:
                encoded.put(_Encoded(items, *encode_batch(encoder, items, images)))
            else:
                ledger.progress()
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
    return ledger.finish()


def _lending(read: Callable[[], None], preprocessor: Preprocessor) -> Callable[[], None]:
    """``read`` with the preprocessing workers lent to the sources it reads, for their OCR."""

    def lending() -> None:
        with lent_workers(preprocessor.run, preprocessor.workers):
            read()

    return lending


def _admitter(ledger: Ledger, donors: Donors | None) -> Callable[[list[SourceResult]], list[KnowledgeItem]]:
    """The step that keeps a chunk's items still to encode: new ones, less those a donor gives vectors to."""
    if donors is None:
        return ledger.admit
    return lambda chunk: donors.give(ledger.admit(chunk), ledger)


def _waiting(encoded: queue.Queue) -> list[_Encoded]:
    """The next encoded batch and those queued behind it, up to ``_WRITE_ROWS`` items: one write for all of them
    (a store behind the encoder gets fewer, larger writes). Empty once the encoder is done."""
    batches: list[_Encoded] = []
    rows = 0
    while rows < _WRITE_ROWS:
        try:
            batch = encoded.get(block=not batches)
        except queue.Empty:
            break
        if batch is _DONE:
            encoded.put(_DONE)  # seen again by the next call, which then returns nothing
            break
        batches.append(batch)
        rows += len(batch.items)
    return batches


def _collect(chunk: _Pending, ledger: Ledger) -> tuple[list[KnowledgeItem], list[PreparedImage | None]]:
    """The chunk's items whose images were prepared (or that have none), with their images; each failure reported."""
    kept, images = [], []
    prepared = iter(chunk.images.results())
    for item in chunk.items:
        result = next(prepared) if item.image is not None else None
        if isinstance(result, ImageLoadError):
            ledger.failed(item, str(result))
        else:
            kept.append(item)
            images.append(result)
    return kept, images
