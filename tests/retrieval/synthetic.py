"""Stores built from constructed vectors, and an encoder that hands back given vectors: no model involved.

Every query is a unit axis; every item's fused and image vectors are ``c·query + √(1-c²)·own axis``,
so each vector's cosine with its query is exactly the ``c`` asked for, and 0 with other queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from connectors.milvus import MilvusStore
from rag.items import ImageRef, KnowledgeItem
from tests.connectors.milvus_corpus import DIM, ENCODER


def normalised(signal: str, cosine: float) -> float:
    """What Milvus's weighted fusion makes of a raw score (the scale ``connectors.milvus.blend`` documents)."""
    return 0.5 + math.atan(cosine) / math.pi if signal in ("fused", "image") else 2 * math.atan(cosine) / math.pi


class VectorEncoder:
    """An encoder whose vectors are looked up: texts by text, images by path, pairs by ``"path|text"``."""

    name = "synthetic"
    dim = DIM
    fingerprint = ENCODER.fingerprint

    def __init__(self, vectors: dict[str, np.ndarray], *, supports_fused: bool = True) -> None:
        self.vectors = vectors
        self.supports_fused = supports_fused

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts])

    def encode_image(self, images: Sequence[object]) -> np.ndarray:
        return np.stack([self.vectors[str(image)] for image in images])

    def encode_fused(self, images: Sequence[object], texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[f"{image}|{text}"] for image, text in zip(images, texts)])


@dataclass
class Synthetic:
    """Items named by their source, each with its cosines (fused, image) to one query; text-only items have one."""

    axes: dict[str, int] = field(default_factory=dict)  # query text → its axis
    items: list[KnowledgeItem] = field(default_factory=list)
    fused: list[np.ndarray] = field(default_factory=list)
    image: list[np.ndarray] = field(default_factory=list)

    def query(self, text: str) -> np.ndarray:
        self.axes.setdefault(text, len(self.axes))
        return _axis(self.axes[text])

    def add(
        self,
        source: str,
        query: str,
        fused: float,
        image: float,
        *,
        text: str | None = None,
        pixels: bytes = b"",
        tags: Sequence[str] = (),
    ) -> KnowledgeItem:
        """An image+text item (an image alone with ``text=""``) whose fused and image vectors have these cosines with
        ``query``'s vector."""
        item = KnowledgeItem.create(
            source=source,
            text=f"caption of {source}" if text is None else text,
            image=ImageRef(uri=f"/synthetic/{source}.png", mime_type="image/png"),
            image_bytes=pixels or source.encode(),
            tags=list(tags),
        )
        along, own = self.query(query), DIM - 1 - 2 * len(self.items)  # queries count up, items' own axes down
        self.fused.append(fused * along + math.sqrt(1 - fused**2) * _axis(own))
        self.image.append(image * along + math.sqrt(1 - image**2) * _axis(own - 1))
        self.items.append(item)
        return item

    def add_text(self, source: str, query: str, cosine: float, *, text: str = "") -> KnowledgeItem:
        """A text-only item whose one vector has this cosine with ``query``'s vector (stored in both fields)."""
        item = KnowledgeItem.create(source=source, text=text or f"text of {source}")
        along, own = self.query(query), DIM - 1 - 2 * len(self.items)
        vector = cosine * along + math.sqrt(1 - cosine**2) * _axis(own)
        self.fused.append(vector)
        self.image.append(vector)  # ignored by the store: an item without an image has no image vector
        self.items.append(item)
        return item

    def encoder(self, **kwargs: bool) -> VectorEncoder:
        return VectorEncoder({text: _axis(axis) for text, axis in self.axes.items()}, **kwargs)

    def store(self, db: Path, collection: str = "synthetic", **kwargs: bool) -> MilvusStore:
        """The items written into a new collection (``bm25=False`` leaves BM25 out)."""
        store = MilvusStore.open(db, collection, encoder_info=ENCODER, **kwargs)
        store.upsert(self.items, np.stack(self.fused), np.stack(self.image))
        store.flush()
        return store


def _axis(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector
