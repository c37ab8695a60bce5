"""What every encoder accepts: checked texts and (image, text) pairs, and images decoded from any input."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageOps

from .base import ImageInput

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ImageLoadError(ValueError):
    """An input that is not a readable image; the message names the input."""


def describe(image: ImageInput) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, bytes):
        return f"<{len(image)} bytes>"
    return f"<{type(image).__name__}>"


def load_image(image: str | Path | bytes | Image.Image) -> Image.Image:
    """Open and fully decode an image, EXIF orientation applied; the decompression-bomb guard stays on."""
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image)
    try:
        with warnings.catch_warnings():
            # Past Image.MAX_IMAGE_PIXELS PIL only warns: treat that as the refusal it should be.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
                opened.load()  # the first frame, for animated images
                return ImageOps.exif_transpose(opened)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"cannot read image {describe(image)}: {e}") from e


def as_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list; a bare string or a non-string element is a ``TypeError``."""
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not a single string")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings, got {', '.join(sorted(set(bad)))}")
    return list(texts)


def check_pairs(images: Sequence[ImageInput], texts: Sequence[str]) -> list[str]:
    """The texts of (image, text) pairs, checked: one text per image."""
    texts = as_texts(texts)
    if len(images) != len(texts):
        raise ValueError(f"need one text per image, got {len(images)} images and {len(texts)} texts")
    return texts


def check_runtime(dtype: str, batch_size: int) -> torch.dtype:
    """The torch dtype named ``dtype``, after checking it and the batch size are usable."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return DTYPES[dtype]
