"""What the Ray engine's stages run, and the blocks they pass: columns Ray Data keeps as Arrow arrays and tensors.

A block holds one row per item, in plain columns: the item's strings (``id``, ``text``, ``source``, ``anchor``,
``name``, the image's ``image_uri``, ``mime_type`` and ``image_sha256``, with ``""`` for none), ``has_image``,
``metadata`` and ``tags`` as JSON text and ``created_at`` in ISO 8601 (thumbnails are not stored, so not shipped).
Decoding adds ``pixels``, one ndarray column of the shape and dtype the encoder's transform gives every image
(zeros where a row has no image or its image failed), and ``error`` (``""`` when none); encoding drops the pixels
and adds the float32 vectors ``fused`` and ``image_vector``, with ``runtime`` (JSON) and ``ready_at`` (a time).
Nothing in them is a pickled Python object.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from connectors.milvus.schema import EncoderInfo
from connectors.milvus.store import MilvusStore
from rag.embeddings.base import ImageTransform
from rag.embeddings.inputs import ImageLoadError, PreparedImage
from rag.embeddings.preprocess import prepare_one
from rag.errors import RagError
from rag.items import ImageRef, KnowledgeItem
from rag.settings import Settings

from .encode import encode_batch

Batch = dict[str, np.ndarray]

#: The item's columns, in a block's order.
ITEM_COLUMNS = (
    "id", "text", "source", "anchor", "name", "ref_doc_id", "content_hash", "tenant", "has_image", "image_uri",
    "mime_type", "image_sha256", "metadata", "tags", "created_at",
)  # fmt: skip


class RayEngineError(RagError, RuntimeError):
    """The Ray engine cannot run as asked; the message says what to do."""


def block(items: Sequence[KnowledgeItem]) -> Any:
    """The items as an Arrow table of plain columns, the first block of the pipeline."""
    import pyarrow as pa

    def strings(values: list[str]) -> Any:
        return pa.array(values, pa.string())

    images = [item.image for item in items]
    return pa.table(
        {
            "id": strings([item.id for item in items]),
            "text": strings([item.text for item in items]),
            "source": strings([item.source for item in items]),
            "anchor": strings([item.anchor for item in items]),
            "name": strings([item.name for item in items]),
            "ref_doc_id": strings([item.ref_doc_id for item in items]),
            "content_hash": strings([item.content_hash for item in items]),
            "tenant": strings([item.tenant for item in items]),
            "has_image": pa.array([image is not None for image in images], pa.bool_()),
            "image_uri": strings([image.uri if image else "" for image in images]),
            "mime_type": strings([(image.mime_type or "") if image else "" for image in images]),
            "image_sha256": strings([(image.sha256 or "") if image else "" for image in images]),
            "metadata": strings([json.dumps(item.metadata, ensure_ascii=False) for item in items]),
            "tags": strings([json.dumps(item.tags, ensure_ascii=False) for item in items]),
            "created_at": strings([item.created_at.isoformat() for item in items]),
        }
    )


def items_of(batch: Batch) -> list[KnowledgeItem]:
    """The items a batch's item columns hold (what :func:`block` was given, thumbnails aside)."""
    items = []
    for i in range(len(batch["id"])):
        image = None
        if batch["has_image"][i]:
            image = ImageRef(
                uri=str(batch["image_uri"][i]),
                mime_type=str(batch["mime_type"][i]) or None,
                sha256=str(batch["image_sha256"][i]) or None,
            )
        items.append(
            KnowledgeItem(
                id=str(batch["id"][i]),
                text=str(batch["text"][i]),
                image=image,
                source=str(batch["source"][i]),
                anchor=str(batch["anchor"][i]),
                name=str(batch["name"][i]),
                ref_doc_id=str(batch["ref_doc_id"][i]),
                content_hash=str(batch["content_hash"][i]),
                tenant=str(batch["tenant"][i]),
                metadata=json.loads(batch["metadata"][i]),
                tags=json.loads(batch["tags"][i]),
                created_at=datetime.fromisoformat(str(batch["created_at"][i])),
            )
        )
    return items


def pixel_layout(transform: ImageTransform) -> tuple[tuple[int, ...], str]:
    """The shape and dtype of the pixels ``transform`` gives every image (it resizes them all alike)."""
    pixels = transform(Image.new("RGB", (64, 64))).pixels
    return tuple(pixels.shape), str(pixels.dtype)


def decode(batch: Batch, transform: ImageTransform, shape: tuple[int, ...], dtype: str, threads: int = 1) -> Batch:
    """Ray task: each row's image decoded and transformed into the ``pixels`` column, or its ``error``; by
    ``threads`` threads (Pillow decodes and resizes without holding the GIL)."""
    n = len(batch["id"])
    pixels = np.zeros((n, *shape), dtype=dtype)
    errors = [""] * n
    rows = np.flatnonzero(batch["has_image"])
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = pool.map(partial(prepare_one, transform), [str(batch["image_uri"][i]) for i in rows])
    for i, result in zip(rows, results):
        if isinstance(result, ImageLoadError):
            errors[i] = str(result)
        elif isinstance(result, PreparedImage):
            pixels[i] = result.pixels
    return {**{key: batch[key] for key in ITEM_COLUMNS}, "pixels": pixels, "error": np.array(errors, dtype=object)}


def good_rows(batch: Batch) -> np.ndarray:
    """Positions of the rows without an error."""
    return np.flatnonzero(np.asarray([not error for error in batch["error"]], dtype=bool))


class Encode:
    """Ray actor: loads the encoder once, then turns batches of decoded rows into vectors."""

    def __init__(self, settings: Settings, fingerprint: str, expected_items: int, threads: int):
        from rag.embeddings.registry import load_encoder, runtime_from_settings

        # Ray caps OMP_NUM_THREADS at the whole CPUs reserved, rounded down: the actor's share is ``threads``.
        runtime = runtime_from_settings(settings, "batch", expected_items, threads=threads)
        self.encoder = load_encoder(settings, runtime)
        if self.encoder.fingerprint != fingerprint:
            raise RayEngineError(
                f"the encoder loaded on {socket.gethostname()} has fingerprint {self.encoder.fingerprint}, and the "
                f"collection's is {fingerprint}: RAG_WEIGHTS (and RAG_TEXT_MODEL, RAG_VISION_CONFIG) must name the "
                "same files on every node"
            )
        self.runtime = json.dumps(runtime.to_dict())
        self.ready_at = time.time()

    def __call__(self, batch: Batch) -> Batch:
        n, dim = len(batch["id"]), self.encoder.dim
        fused, image = np.zeros((n, dim), np.float32), np.zeros((n, dim), np.float32)
        if len(ok := good_rows(batch)):
            items = items_of({key: batch[key][ok] for key in ITEM_COLUMNS})
            pixels, with_image = batch["pixels"], batch["has_image"]
            images = [PreparedImage(pixels[i]) if with_image[i] else None for i in ok]
            fused[ok], image[ok] = encode_batch(self.encoder, items, images)
        return {
            **{key: batch[key] for key in (*ITEM_COLUMNS, "error")},
            "fused": fused,
            "image_vector": image,
            "runtime": np.array([self.runtime] * n, dtype=object),
            "ready_at": np.full(n, self.ready_at),
        }


class Write:
    """Ray actor: upserts batches into a Milvus server; passes on what the driver accounts for, not the vectors."""

    def __init__(self, uri: str, collection: str, token: str | None, encoder: EncoderInfo):
        self.store = MilvusStore.open(uri, collection, encoder_info=encoder, create=False, token=token)

    def __call__(self, batch: Batch) -> Batch:
        if len(ok := good_rows(batch)):
            items = items_of({key: batch[key][ok] for key in ITEM_COLUMNS})
            self.store.upsert(items, batch["fused"][ok], batch["image_vector"][ok])
        return {key: batch[key] for key in (*ITEM_COLUMNS, "error", "runtime", "ready_at")}
