"""The preprocessing stage: images decoded and transformed on a pool of worker threads, ahead of the model.

One stage serves the encoder API (``encode_image(paths)``) and every ingestion engine. Decoding,
EXIF handling, resizing and normalising run in parallel with each other and with the model: PIL
and numpy release the GIL while they work, so threads scale with the cores, and a bad file costs
only itself: its error comes back as a value naming it, in its place.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from typing import Iterable, Iterator, Sequence

from .base import ImageInput, ImageTransform
from .inputs import ImageLoadError, PreparedImage, describe

Prepared = PreparedImage | ImageLoadError


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


class Preprocessor:
    """Runs ``transform`` on ``workers`` threads; results come back in input order, at most ``ahead`` in flight."""

    def __init__(self, transform: ImageTransform, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.transform = transform
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _one(self, image: ImageInput) -> Prepared:
        return prepare_one(self.transform, image)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rag-prepare")
            return self._pool

    def submit(self, image: ImageInput) -> Future[Prepared]:
        """Start preparing one image; the future's result is the prepared image or its ``ImageLoadError``."""
        return self._executor().submit(self._one, image)

    def map(self, images: Iterable[ImageInput], ahead: int | None = None) -> Iterator[Prepared]:
        """Each image prepared, or its ``ImageLoadError``, in input order; ``ahead`` bounds the work queued."""
        ahead = max(1, ahead or 4 * self.workers)
        pending: deque[Future[Prepared]] = deque()
        try:
            for image in images:
                pending.append(self.submit(image))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early: drop what has not started
            for future in pending:
                future.cancel()

    def batches(self, images: Sequence[ImageInput], batches: Sequence[Sequence[int]], ahead: int = 2) -> Iterator[list[PreparedImage]]:
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
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
