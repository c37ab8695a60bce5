"""An image on its way to an encoder: what callers hand over (:data:`ImageInput`), its prepared pixels
(:class:`PreparedImage`), the transform from one to the other, and the error for an input that is no image.

The lowest module of the package: the encoder protocol, the input checks and the preprocessing workers all
import it, and importing it costs neither torch nor PIL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from rag.errors import RagError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

#: An image as callers hand it over: a path, raw bytes, a PIL image, an already preprocessed
#: ``(3, H, W)`` tensor, or a :class:`PreparedImage` from ``prepare``.
ImageInput = Union[str, Path, bytes, "Image.Image", "torch.Tensor", "PreparedImage"]

#: One image in, its prepared pixels out; picklable, so that other processes (Ray tasks) can run it.
ImageTransform = Callable[[ImageInput], "PreparedImage"]


class ImageLoadError(RagError, ValueError):
    """An input that is not a readable image; the message names the input."""


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """One image decoded and transformed for an encoder, ready to be stacked into a batch.

    ``pixels`` is ``(3, H, W)``: ``uint8`` before normalisation (the encoder normalises on its
    device through an exact lookup table), or ``float32`` as the model reads it.
    """

    pixels: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape)


def describe(image: ImageInput) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, bytes):
        return f"<{len(image)} bytes>"
    return f"<{type(image).__name__}>"
