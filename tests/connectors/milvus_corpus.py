"""Test corpora for the Milvus store: items and random unit vectors (dim 64), no model involved."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from connectors.milvus import EncoderInfo
from rag.items import ImageRef, KnowledgeItem

DIM = 64
ENCODER = EncoderInfo(variant="random-64", dim=DIM, fingerprint="0123456789abcdef")
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def image_item(i: int, **fields: Any) -> KnowledgeItem:
    fields.setdefault("text", f"caption of picture {i}")
    fields.setdefault("created_at", T0 + timedelta(days=i))
    return KnowledgeItem.create(
        source=fields.pop("source", f"pictures/{i}.jpg"),
        image=ImageRef(uri=f"/data/pictures/{i}.jpg", mime_type="image/jpeg"),
        image_bytes=f"pixels {i}".encode(),
        **fields,
    )


def text_item(i: int, **fields: Any) -> KnowledgeItem:
    fields.setdefault("text", f"a note about topic {i}")
    fields.setdefault("created_at", T0 + timedelta(days=i))
    return KnowledgeItem.create(source=fields.pop("source", f"notes/{i}.md"), **fields)
