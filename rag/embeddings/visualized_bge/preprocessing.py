"""Image loading and the exact preprocessing of the reference model, on PIL and numpy.

Reference order: resize the shortest side to ``size`` (bicubic), centre-crop ``size``,
convert to RGB, scale to [0, 1], normalise with the OpenAI CLIP mean and std.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..base import ImageInput
from ..inputs import prepare_image

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


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


def pixels_from_pil(image: Image.Image, size: int) -> torch.Tensor:
    """The reference transform of one decoded image: a ``(3, size, size)`` float32 tensor."""
    image = _center_crop(_resize_shortest_side(image, size), size).convert("RGB")
    array = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    array = (array - CLIP_MEAN) / CLIP_STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def preprocess(image: ImageInput, size: int) -> torch.Tensor:
    """Any accepted image input to a ``(3, size, size)`` float32 tensor."""
    return prepare_image(image, (3, size, size), lambda decoded: pixels_from_pil(decoded, size))
