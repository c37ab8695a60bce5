"""The encoder seam: what the store, ingestion and retrieval may rely on (importing it costs no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from rag.errors import RagError

from .prepared import ImageInput, ImageTransform

if TYPE_CHECKING:
    import numpy as np

    from rag.runtime import Runtime

    from .preprocess import Preprocessor
    from .text_window import TextWindow


class FusedNotSupportedError(RagError, NotImplementedError):
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
        """Identifies the weights: two encoders with equal fingerprints give equal vectors (any device or dtype)."""
        ...

    @property
    def supports_fused(self) -> bool: ...

    @property
    def runtime(self) -> Runtime:
        """Where and how it runs: device, dtype, batch size, preprocessing workers (see ``rag.runtime``)."""
        ...

    @property
    def image_transform(self) -> ImageTransform:
        """The per-image decode-and-transform step (``ImageLoadError`` on a bad input); encode methods
        accept its output. Picklable, for workers in other processes or on other machines."""
        ...

    @property
    def preprocessor(self) -> Preprocessor:
        """The preprocessing stage (``rag.embeddings.preprocess``) running ``image_transform`` on the
        runtime's workers: the encode methods feed from it, and so do ingestion engines."""
        ...

    @property
    def text_window(self) -> TextWindow:
        """Its tokenizer as a token counter and the window a text chunk must fit (special tokens included,
        at most 512): what sources chunk documents to. ``rag.embeddings.registry.load_text_window`` gives the
        same without the model."""
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
