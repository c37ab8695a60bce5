"""The encoder seam: what the store, ingestion and retrieval may rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence, Union, runtime_checkable

import numpy as np
import torch
from PIL import Image

#: An image as callers hand it over: a path, raw bytes, a PIL image, or an already
#: preprocessed ``(3, H, W)`` tensor.
ImageInput = Union[str, Path, bytes, Image.Image, torch.Tensor]


class FusedNotSupportedError(NotImplementedError):
    """Raised by encoders that have no joint image+text embedding."""


@runtime_checkable
class Encoder(Protocol):
    """Maps texts, images and (image, text) pairs into one L2-normalised vector space."""

    @property
    def name(self) -> str:
        """Human-readable model name, recorded with a collection."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str:
        """Identifies the weights: two encoders with equal fingerprints give equal vectors."""
        ...

    @property
    def supports_fused(self) -> bool: ...

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Decode images into the tensor the model reads; the encode methods accept its rows."""
        ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_image(self, images: Sequence[ImageInput]) -> np.ndarray: ...

    def encode_fused(self, images: Sequence[ImageInput], texts: Sequence[str]) -> np.ndarray: ...

    def encode_fused_and_image(
        self, images: Sequence[ImageInput], texts: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Both vectors an image+text item is stored with; one image pass where the model allows.

        Encoders without a fused embedding (``supports_fused`` False) return the image vector twice.
        """
        ...
