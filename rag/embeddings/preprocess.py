"""The preprocessing stage: images decoded and transformed by a pool of workers, ahead of the model.

One stage serves the encoder API (``encode_image(paths)``) and every ingestion engine. Decoding,
EXIF handling, resizing and normalising run in parallel with each other and with the model, and a
bad file costs only itself: its error comes back as a value naming it, in its place.

Two kinds of pool, chosen by the runtime (``rag.runtime``):

- threads (the default): PIL and numpy release the GIL while they decode and resize, so threads
  scale until the Python parts of PIL become the limit; nothing to start;
- processes (on CUDA machines, where the GPU outruns a few cores): files and bytes go to worker
  processes in groups, each group coming back as one stacked array, so the GIL of the process that
  feeds the GPU stays free. A worker that dies on a hostile file is replaced, and its group is
  retried one image at a time so that only the file that kills a worker is lost.

Images already in memory (PIL images, tensors, prepared images) are always prepared in threads.
Worker processes are started with ``spawn`` (the parent may hold CUDA and threads), which re-imports
the main script in each worker: where they cannot start (a script without an
``if __name__ == "__main__":`` guard, say), the stage says so once and uses threads.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import chain, islice
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from .prepared import ImageInput, ImageLoadError, ImageTransform, PreparedImage, describe

logger = logging.getLogger(__name__)

Prepared = PreparedImage | ImageLoadError
T = TypeVar("T")

#: Images per task sent to a worker process: one result array per group keeps the traffic cheap.
GROUP = 16


class Preprocessor:
    """Runs ``transform`` on ``workers`` threads (or processes, for files and bytes); results in input order."""

    def __init__(self, transform: ImageTransform, workers: int, *, processes: bool = False, group: int = GROUP):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.transform = transform
        self.workers = workers
        self.processes = processes
        self.group = group
        self._threads: ThreadPoolExecutor | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- submitting ------------------------------------------------------------------------------

    def submit(self, images: Sequence[ImageInput]) -> PendingImages:
        """Start preparing ``images``; ``results()`` of the returned object waits for them, in order."""
        slots: list[_Slot] = []
        to_processes: list[tuple[int, ImageInput]] = []
        use_processes = self.processes and self._process_pool() is not None
        for image in images:
            if use_processes and isinstance(image, (str, Path, bytes)):
                to_processes.append((len(slots), image))
                slots.append(_Slot(None))
            elif isinstance(image, (str, Path, bytes, Image.Image)):
                slots.append(_Slot(self._thread_pool().submit(self._one, image)))
            else:  # prepared images and tensors only need checking: no worker needed
                done: Future[Prepared] = Future()
                done.set_result(self._one(image))
                slots.append(_Slot(done))
        for start in range(0, len(to_processes), self.group):
            members = to_processes[start : start + self.group]
            task = _GroupTask(self, [image for _, image in members])
            for offset, (index, _) in enumerate(members):
                slots[index] = _Slot(None, task, offset)
        return PendingImages(slots)

    def run(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Other work per input (OCR of a page) on the same worker threads, queued with the images."""
        return self._thread_pool().submit(fn, *args)

    def map(self, images: Iterable[ImageInput], ahead: int | None = None) -> Generator[Prepared, None, None]:
        """Each image prepared, or its ``ImageLoadError``, in input order; ``ahead`` bounds the work queued."""
        ahead = max(1, ahead or 4 * self.workers * (self.group if self.processes else 1))
        source = iter(images)
        pending: deque[PendingImages] = deque()
        queued = 0
        step = self.group if self.processes else 1
        try:
            while True:
                chunk = list(islice(source, step))
                if chunk:
                    pending.append(self.submit(chunk))
                    queued += len(chunk)
                while pending and (not chunk or queued >= ahead):
                    done = pending.popleft()
                    queued -= len(done)
                    yield from done.results()
                if not chunk:
                    return
        finally:  # the consumer stopped early: drop what has not started
            for waiting in pending:
                waiting.cancel()

    def batches(
        self, images: Sequence[ImageInput], batches: Sequence[Sequence[int]], ahead: int = 2
    ) -> Iterator[list[PreparedImage]]:
        """The prepared images of each batch of indices, the next ``ahead`` batches prepared meanwhile;
        raises the ``ImageLoadError`` of a bad image when its batch is reached."""
        widest = max((len(b) for b in batches), default=1)
        results = self.map((images[i] for i in chain.from_iterable(batches)), ahead=max(ahead * widest, self.workers))
        for batch in batches:
            prepared = [next(results) for _ in batch]
            for result in prepared:
                if isinstance(result, ImageLoadError):
                    results.close()
                    raise result
            yield prepared  # type: ignore[misc]

    def close(self) -> None:
        with self._lock:
            if self._threads is not None:
                self._threads.shutdown(wait=False, cancel_futures=True)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._threads = self._pool = None

    # -- internals ---------------------------------------------------------------------------------

    def _one(self, image: ImageInput) -> Prepared:
        return prepare_one(self.transform, image)

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="rag-prepare")
            return self._threads

    def _process_pool(self, broken: ProcessPoolExecutor | None = None) -> ProcessPoolExecutor | None:
        """The worker processes, started (and checked) on first use; a new set when ``broken`` is the
        current one; None, and threads from then on, when worker processes cannot start here."""
        with self._lock:
            if not self.processes:
                return None
            if self._pool is None or self._pool is broken:
                if broken is not None:
                    broken.shutdown(wait=False, cancel_futures=True)
                # spawn: the parent may hold CUDA and threads, which a forked child must not inherit.
                pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=get_context("spawn"),
                    initializer=_set_transform,
                    initargs=(self.transform,),
                )
                try:
                    # One call per worker: every worker is started now, not one by one as work arrives.
                    for ping in [pool.submit(_ping) for _ in range(self.workers)]:
                        ping.result(timeout=120)
                except Exception as e:  # the workers died starting, or never answered
                    pool.shutdown(wait=False, cancel_futures=True)
                    self.processes, self._pool = False, None
                    logger.warning(
                        "image preprocessing uses threads: worker processes could not start (%s). A script that "
                        'uses them must guard its entry point with `if __name__ == "__main__":`; '
                        "RAG_PREPROCESS=threads chooses threads from the start.",
                        _first_line(e),
                    )
                    return None
                self._pool = pool
            return self._pool


@dataclass
class _Slot:
    future: Future | None
    task: _GroupTask | None = None
    offset: int = 0


class _GroupTask:
    """Images prepared together in one worker process; retried one by one if a worker dies meanwhile."""

    def __init__(self, owner: Preprocessor, images: list[ImageInput]):
        self.owner = owner
        self.images = images
        self.pool: ProcessPoolExecutor | None = owner._process_pool()
        self.future: Future | None = None
        self._results: list[Prepared] | None = None
        try:
            self.future = self.pool.submit(_prepare_group, images) if self.pool is not None else None
        except BrokenProcessPool:  # a worker died since: the results will retry in a new pool
            pass

    def results(self) -> list[Prepared]:
        if self._results is None:
            try:
                packed = self.future.result() if self.future is not None else None
            except BrokenProcessPool:
                packed = None
            self._results = _unpack(packed) if packed is not None else [self._alone(image) for image in self.images]
        return self._results

    def _alone(self, image: ImageInput, attempts: int = 2) -> Prepared:
        """One image in a healthy pool; one that kills a worker twice is reported, and only it."""
        for _ in range(attempts):
            self.pool = self.owner._process_pool(broken=self.pool)
            if self.pool is None:  # processes cannot start any more: threads
                return self.owner._one(image)
            try:
                return _unpack(self.pool.submit(_prepare_group, [image]).result())[0]
            except BrokenProcessPool:
                continue
        return ImageLoadError(f"cannot read image {describe(image)}: the process decoding it died")


class PendingImages:
    """Images on their way through the preprocessing stage."""

    def __init__(self, slots: list[_Slot]):
        self._slots = slots

    def __len__(self) -> int:
        return len(self._slots)

    def results(self) -> list[Prepared]:
        """Each image prepared, or its ``ImageLoadError``, in order (waits for the workers)."""
        return [s.task.results()[s.offset] if s.task is not None else s.future.result() for s in self._slots]  # type: ignore[union-attr]

    def cancel(self) -> None:
        for slot in self._slots:
            future = slot.task.future if slot.task is not None else slot.future
            if future is not None:
                future.cancel()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def prepare_one(transform: ImageTransform, image: ImageInput) -> Prepared:
    """``transform(image)``, or the ``ImageLoadError`` naming the image when it cannot be read."""
    try:
        return transform(image)
    except ImageLoadError as e:
        return e
    except Exception as e:  # decoders of hostile files raise odd types: it costs that file only
        error = ImageLoadError(f"cannot read image {describe(image)}: {type(e).__name__}: {e}")
        error.__cause__ = e
        return error


# -- in the worker processes ------------------------------------------------------------------------

_TRANSFORM: ImageTransform | None = None


def _ping() -> bool:
    return True


def _set_transform(transform: ImageTransform) -> None:
    global _TRANSFORM
    _TRANSFORM = transform


def _prepare_group(images: list[ImageInput]) -> tuple[np.ndarray | None, list[str | None]]:
    """The group's pixels stacked in one array (one transfer back), and an error message or None per image."""
    assert _TRANSFORM is not None, "worker started without a transform"
    arrays: list[np.ndarray] = []
    errors: list[str | None] = []
    for image in images:
        result = prepare_one(_TRANSFORM, image)
        if isinstance(result, ImageLoadError):
            errors.append(str(result))
        else:
            arrays.append(result.pixels)
            errors.append(None)
    return (np.stack(arrays) if arrays else None), errors


def _unpack(packed: tuple[np.ndarray | None, list[str | None]]) -> list[Prepared]:
    stacked, errors = packed
    rows = iter(stacked) if stacked is not None else iter(())
    return [ImageLoadError(error) if error is not None else PreparedImage(next(rows)) for error in errors]
