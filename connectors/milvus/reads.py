"""Reading stored items of an open collection: by id, every one with its vectors, which ids are stored."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from connectors.milvus import schema
from connectors.milvus.core import ID_BATCH, StoreCore, chunks, hit_of
from connectors.milvus.filters import Filters, compile_filter
from rag.items import KnowledgeItem


def get(core: StoreCore, ids: Sequence[str]) -> list[KnowledgeItem]:
    """The stored items with these ids, in the order asked; unknown ids are left out."""
    found: dict[str, KnowledgeItem] = {}
    for batch in chunks(list(dict.fromkeys(ids)), ID_BATCH):
        for row in core.rows(batch, core.output_fields(False)):
            found[row[schema.ID]] = schema.from_row(row)
    return [found[i] for i in ids if i in found]


def iter_vectors(
    core: StoreCore, *, filter: Filters | None, batch_size: int
) -> Iterator[tuple[KnowledgeItem, np.ndarray, np.ndarray | None]]:
    """Every stored item (or those matching ``filter``) with its fused and image vector, read in batches."""
    iterator = core.client.query_iterator(
        core.collection, batch_size=batch_size, filter=compile_filter(filter), output_fields=core.output_fields(True)
    )
    try:
        while batch := iterator.next():
            for row in batch:
                hit = hit_of(row, 0.0)
                yield hit.item, hit.embedding, hit.image_embedding  # type: ignore[misc]
    finally:
        iterator.close()


def existing_ids(core: StoreCore, ids: Sequence[str]) -> set[str]:
    """Which of these ids are stored already."""
    existing: set[str] = set()
    for batch in chunks(list(dict.fromkeys(ids)), ID_BATCH):
        existing.update(row[schema.ID] for row in core.rows(batch, [schema.ID]))
    return existing
