"""Text read from pixels (OCR), for scanned PDF pages and, on request, pictures: RapidOCR on onnxruntime.

The ``rapidocr`` wheel ships its PP-OCR detection, orientation and recognition models, so OCR runs offline
with nothing downloaded. It is the optional extra ``mmrag[ocr]``. ``SourceOptions.ocr`` says when to use it:
``auto`` reads PDF pages whose text layer is empty or nearly so (fewer than ``MIN_PAGE_CHARS`` characters),
``all`` pictures as well, ``off`` never. Without the extra, ``auto`` reports the pages that had no text, naming
the extra, and ``all`` is refused before a run starts (``require_ocr``).

A picture is read only within the same pixel limit as any image (``max_image_pixels``). Pages and pictures are
read in the preprocessing workers an ingest run lends the sources (``later``), several at once; each worker thread
loads its own engine on first use, its onnxruntime session given its share of the cores. Read on their own, the
sources read one page at a time, on every core. A page whose OCR fails is kept as its picture, with a warning.
"""

from __future__ import annotations

import importlib.util
import io
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Literal

from PIL import Image

from rag.errors import RagError
from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput
from .later import lent, off_thread

#: When to read text from pixels: ``rag ingest --ocr``, ``RAG_OCR``, an upload's ``ocr`` field.
OcrMode = Literal["auto", "all", "off"]
#: Pages whose text layer has fewer characters than this are read with OCR (``ocr="auto"``).
MIN_PAGE_CHARS = 16
OCR_EXTRA = "pip install 'mmrag[ocr]'"
#: Metadata key saying where an item's text came from; its value ``"ocr"`` for text read from pixels.
TEXT_ORIGIN = "text_origin"

#: Engines not in use, by onnxruntime thread count: as many as pictures were ever read at once. They live here,
#: not in the worker threads' locals: a forked child (a subprocess's ``preexec_fn``, as Ray starts its processes)
#: frees the other threads' locals, and an onnxruntime session freed there waits forever for its own threads.
_idle_engines: dict[int, list[Any]] = {}
_idle_lock = threading.Lock()


class OcrUnavailableError(RagError, RuntimeError):
    """``ocr="all"`` was asked for and the OCR extra is not installed."""


def ocr_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("rapidocr", "onnxruntime"))


def require_ocr(mode: str) -> None:
    """Refuse ``mode="all"`` without the extra, with the advice to install it (or to use ``auto``)."""
    if mode == "all" and not ocr_installed():
        raise OcrUnavailableError.worded(
            f"{{ocr_all}} needs the OCR extra, which is not installed: {OCR_EXTRA} (or use {{ocr_auto}}, which notes "
            "the pages it could not read, or {ocr_off})"
        )


def no_text_note(pages: int) -> str:
    """What ``auto`` says about pages it could not read for want of the extra."""
    return (
        f"{pages} page{'s' if pages != 1 else ''} without a text layer (scans?) stored as pictures only: "
        f"install the OCR extra to read their text ({OCR_EXTRA}), or set RAG_OCR=off to silence this"
    )


def start_ocr(data: bytes, max_pixels: int) -> Future[str]:
    """OCR of an encoded picture (a rendered page, a PNG file's bytes) begun in the lent workers, or done here."""
    workers = lent()
    threads = max(1, _cores() // workers.count) if workers is not None else 0  # 0: onnxruntime's default, all
    return off_thread(_read_encoded, data, max_pixels, threads)


def ocr_result(done: Future[str], where: str) -> tuple[str, list[SourceError]]:
    """The text OCR found, or ``""`` and what went wrong: a picture over the pixel limit, or an engine that failed
    on this picture (then only this page is read without its text; the others are not touched)."""
    try:
        return done.result(), []
    except BadInput as e:
        return "", [e.report(where)]
    except (OSError, ValueError, SyntaxError):
        return "", []  # a picture PIL cannot decode: the preprocessing stage names it
    except Exception as e:
        reason = f"OCR failed ({type(e).__name__}: {e}): stored as its picture, without the text in its pixels"
        return "", [SourceError(source=where, reason=reason, kind=Kind.OCR_FAILED, severity=Severity.WARNING)]


def read_pixels(image: Image.Image, max_pixels: int, threads: int = 0) -> str:
    """The text OCR finds in ``image``, lines in reading order; empty when it finds none. ``threads``: the
    onnxruntime threads of the engine that reads it (0: all cores)."""
    width, height = image.size
    if width * height > max_pixels:
        raise BadInput(
            Kind.IMAGE_TOO_LARGE,
            f"{width}x{height} image exceeds the {max_pixels}-pixel limit (decompression-bomb guard): not read by OCR",
        )
    import numpy as np

    pixels = np.asarray(image.convert("RGB"))
    with _engine(threads) as engine:
        result = engine(pixels)
    lines = [str(t).strip() for t in (getattr(result, "txts", None) or ())]
    return "\n".join(line for line in lines if line)


def _read_encoded(data: bytes, max_pixels: int, threads: int) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return read_pixels(image, max_pixels, threads)


@contextmanager
def _engine(threads: int) -> Iterator[Any]:
    """An engine with ``threads`` onnxruntime threads, lent for one picture (one engine reads one picture at a
    time); loaded when none is idle."""
    with _idle_lock:
        idle = _idle_engines.setdefault(threads, [])
        engine = idle.pop() if idle else None
    if engine is None:
        engine = new_engine(threads)
    try:
        yield engine
    finally:
        with _idle_lock:
            _idle_engines[threads].append(engine)


def new_engine(threads: int) -> Any:
    """A RapidOCR engine (a callable from an RGB array to a result with ``txts``) on ``threads`` threads."""
    from rapidocr import RapidOCR

    params: dict[str, Any] = {"Global.log_level": "error"}
    if threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
    return RapidOCR(params=params)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
