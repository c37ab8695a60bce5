"""Text read from pixels (OCR), for scanned PDF pages and, on request, pictures: RapidOCR on onnxruntime.

The ``rapidocr`` wheel ships its PP-OCR detection, orientation and recognition models, so OCR runs offline
with nothing downloaded. It is the optional extra ``mmrag[ocr]``. ``SourceOptions.ocr`` says when to use it:
``auto`` reads PDF pages whose text layer is empty or nearly so (fewer than ``MIN_PAGE_CHARS`` characters),
``all`` pictures as well, ``off`` never. Without the extra, ``auto`` reports the pages that had no text, naming
the extra, and ``all`` is refused before a run starts (``require_ocr``).

A picture is read only within the same pixel limit as any image (``max_image_pixels``). One engine is loaded per
process, on first use; calls are serialised, since one onnxruntime session already uses the cores.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

from PIL import Image

from rag.errors import RagError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput

#: Pages whose text layer has fewer characters than this are read with OCR (``ocr="auto"``).
MIN_PAGE_CHARS = 16
OCR_EXTRA = "pip install 'mmrag[ocr]'"
#: Metadata key saying where an item's text came from; its value ``"ocr"`` for text read from pixels.
TEXT_ORIGIN = "text_origin"

_lock = threading.Lock()
_engine: Any = None


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


def read_pixels(image: Image.Image, max_pixels: int) -> str:
    """The text OCR finds in ``image``, lines in reading order; empty when it finds none."""
    width, height = image.size
    if width * height > max_pixels:
        raise BadInput(
            Kind.IMAGE_TOO_LARGE,
            f"{width}x{height} image exceeds the {max_pixels}-pixel limit (decompression-bomb guard): not read by OCR",
        )
    import numpy as np

    pixels = np.asarray(image.convert("RGB"))
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr import RapidOCR

            _engine = RapidOCR(params={"Global.log_level": "error"})
        result = _engine(pixels)
    lines = [str(t).strip() for t in (getattr(result, "txts", None) or ())]
    return "\n".join(line for line in lines if line)
