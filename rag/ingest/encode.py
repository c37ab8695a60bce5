"""The vectors an item is stored with, computed alike by every ingestion engine."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.embeddings.base import Encoder
from rag.embeddings.inputs import PreparedImage
from rag.items import KnowledgeItem


def encode_batch(
    encoder: Encoder, items: Sequence[KnowledgeItem], images: Sequence[PreparedImage | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Fused and image vectors of each item, given its prepared image (None for a text-only item).

    Text-only items get their text vector as the fused one and zeros as the image one (not stored).
    """
    n = len(items)
    fused = np.zeros((n, encoder.dim), dtype=np.float32)
    image = np.zeros((n, encoder.dim), dtype=np.float32)
    with_image = [i for i, p in enumerate(images) if p is not None]
    text_only = [i for i, p in enumerate(images) if p is None]
    if with_image:
        prepared = [images[i] for i in with_image]
        texts = [items[i].text for i in with_image]
        fused[with_image], image[with_image] = encoder.encode_fused_and_image(prepared, texts)  # type: ignore[arg-type]
    if text_only:
        fused[text_only] = encoder.encode_text([items[i].text for i in text_only])
    return fused, image
