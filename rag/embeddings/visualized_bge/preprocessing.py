"""The exact preprocessing of the reference model, on PIL and numpy.

Reference order: resize the shortest side to ``size`` (bicubic), centre-crop ``size``, convert to
RGB, scale to [0, 1], normalise with the OpenAI CLIP mean and std. The workers stop at the
cropped RGB ``uint8`` pixels; the scale-and-normalise step is a lookup in :data:`NORMALISATION`,
which holds exactly the reference's float32 results for each of the 256 values of each channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..base import ImageInput
from ..inputs import PreparedImage, normalisation_table, prepare_image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NORMALISATION = normalisation_table(CLIP_MEAN, CLIP_STD)


def _resize_shortest_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, Image.Resampling.BICUBIC)


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def rgb_pixels(image: Image.Image, size: int) -> np.ndarray:
    """The reference's resize, crop and RGB conversion of one decoded image: ``(3, size, size)`` uint8."""
    cropped = _center_crop(_resize_shortest_side(image, size), size)
    rgb = cropped if cropped.mode == "RGB" else cropped.convert("RGB")  # converting RGB to RGB copies it
    return np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1))


@dataclass(frozen=True)
class VisualizedBGETransform:
    """Any accepted image input to a :class:`PreparedImage` (uint8 unless given as a float tensor)."""

    size: int

    def __call__(self, image: ImageInput) -> PreparedImage:
        return prepare_image(image, (3, self.size, self.size), self._pixels)

    def _pixels(self, decoded: Image.Image) -> np.ndarray:
        return rgb_pixels(decoded, self.size)
