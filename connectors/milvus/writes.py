"""Writing to an open collection: upserts checked before anything is written, flushes, deletes; the store's own
BM25 statistics (``bm25``) follow every write."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from connectors.milvus import schema
from connectors.milvus.core import ID_BATCH, WRITE_BATCH, StoreCore, chunks
from connectors.milvus.filters import Filters, compile_filter, id_in
from connectors.milvus.indexes import settle_index
from connectors.milvus.schema import Backend
from rag.items import KnowledgeItem

logger = logging.getLogger(__name__)

_NORM_TOLERANCE = 1e-2


def upsert(
    core: StoreCore, items: Sequence[KnowledgeItem], fused: np.ndarray, image: np.ndarray | None, *, new: bool
) -> int:
    """Write the items' rows, replacing those with the same ids, or nothing when one of them cannot be stored."""
    core.writable()
    if not items:
        return 0
    fused = _check_matrix(core, fused, len(items), "fused", range(len(items)))
    with_image = [i for i, item in enumerate(items) if item.image is not None]
    if image is not None:
        image = _check_matrix(core, image, len(items), "image", with_image)
    elif with_image:
        raise ValueError(f"{len(with_image)} item(s) have an image but no image vectors were given")
    rows_by_id: dict[str, dict[str, Any]] = {}
    refused: list[str] = []
    for i, item in enumerate(items):
        try:
            rows_by_id[item.id] = schema.to_row(item, fused[i], image[i] if image is not None else None)
        except schema.ItemTooLargeError as exc:
            refused.append(str(exc))
    if refused:
        raise ValueError(f"{len(refused)} item(s) cannot be stored, nothing written: {' | '.join(refused)}")
    if len(rows_by_id) < len(items):
        logger.debug("upsert: %d duplicate id(s) in one call, the last of each kept", len(items) - len(rows_by_id))
    for batch in chunks(list(rows_by_id.values()), WRITE_BATCH):
        if core.terms is not None:
            replaced = [] if new else core.rows([row[schema.ID] for row in batch], [schema.TEXT])
            core.terms.weigh(batch, [row[schema.TEXT] for row in replaced])
        core.client.upsert(core.collection, batch)
    logger.debug("upserted %d item(s) into %s", len(rows_by_id), core.collection)
    return len(rows_by_id)


def flush(core: StoreCore) -> None:
    """Seal written data; bring the store's own BM25 statistics up to date; on Lite, settle the vector index."""
    core.client.flush(core.collection)
    if core.terms is not None:
        core.terms.settle(core.count(""))
    if core.backend is Backend.LITE:
        settle_index(core)


def delete(core: StoreCore, *, ids: Sequence[str] | None, filter: Filters | None) -> int:
    """Delete by ids or by filter (exactly one, never an empty filter); returns how many items were deleted."""
    core.writable()
    if (ids is None) == (filter is None):
        raise ValueError("delete needs either ids or filter")
    if ids is not None:
        expressions = [id_in(batch) for batch in chunks(list(dict.fromkeys(ids)), ID_BATCH)]
    else:
        expressions = [compile_filter(filter)]
    if not all(expressions):
        raise ValueError("refusing to delete with an empty filter; drop() removes the whole collection")
    deleted = 0
    for expr in expressions:
        deleted += core.count(expr)
        if core.terms is not None:
            core.terms.forget(core.texts(expr))
        core.client.delete(core.collection, filter=expr)
    return deleted


def _check_matrix(core: StoreCore, vectors: np.ndarray, n: int, name: str, rows: Sequence[int]) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    dim = core.encoder.dim
    if matrix.shape != (n, dim):
        raise ValueError(f"{name} vectors have shape {matrix.shape}; expected ({n}, {dim})")
    checked = matrix[list(rows)]
    if not np.isfinite(checked).all():
        raise ValueError(f"{name} vectors have NaN or infinite values")
    norms = np.linalg.norm(checked, axis=1)
    if norms.size and np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
        raise ValueError(f"{name} vectors must be L2-normalised (norms range {norms.min():.3f}..{norms.max():.3f})")
    return matrix
