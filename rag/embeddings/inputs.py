"""What every encoder accepts: checked texts and (image, text) pairs, and images decoded from any input."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
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


def prepare_image(
    image: ImageInput, shape: tuple[int, ...], transform: Callable[[Image.Image], torch.Tensor]
) -> torch.Tensor:
    """One image as the model's float32 tensor: a tensor of ``shape`` as given, anything else decoded and transformed."""
    if isinstance(image, torch.Tensor):
        if tuple(image.shape) != tuple(shape):
            raise ImageLoadError(f"a preprocessed image must have shape {tuple(shape)}, got {tuple(image.shape)}")
        return image.float()
    try:
        return transform(load_image(image))
    except ImageLoadError:
        raise
    except (OSError, ValueError) as e:
        raise ImageLoadError(f"cannot read image {describe(image)}: {e}") from e


def embed_in_batches(
    n: int,
    batch_size: int,
    width: int,
    embed: Callable[[list[int]], torch.Tensor],
    texts: Sequence[str] | None = None,
) -> np.ndarray:
    """Run ``embed`` on batches of input indices (similar text lengths together, for less padding)
    and return its rows as float32 numpy in input order."""
    out = np.empty((n, width), dtype=np.float32)
    order = sorted(range(n), key=lambda i: len(texts[i])) if texts is not None else list(range(n))
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            out[batch] = embed(batch).float().cpu().numpy()
    return out


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
