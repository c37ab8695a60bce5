"""What every room of the store shares: the collection it is open on, and reading that collection's rows.

The rooms (``collections``, ``writes``, ``search``, ``indexes``, ``names``, ``properties``) are functions of a
:class:`StoreCore`; ``store.MilvusStore`` is the facade that callers use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from connectors.milvus import schema
from connectors.milvus.bm25 import CollectionBm25
from connectors.milvus.connection import Connection
from connectors.milvus.errors import NotSupportedError, SchemaOutdatedError
from connectors.milvus.filters import id_in
from connectors.milvus.schema import Backend, EncoderInfo
from rag.items import KnowledgeItem

#: Rows written per call to Milvus.
WRITE_BATCH = 1_024
#: Rows read per page of a query iterator.
QUERY_PAGE = 4096
#: Ids named in one filter expression.
ID_BATCH = 1_000
_T = TypeVar("_T")


@dataclass(frozen=True, eq=False)
class Hit:
    """One search result: the stored item, its score (higher is closer) and, on request, its vectors."""

    score: float
    item: KnowledgeItem
    embedding: np.ndarray | None = None
    image_embedding: np.ndarray | None = None  # None for items without an image

    @property
    def id(self) -> str:
        return self.item.id


@dataclass(eq=False)
class StoreCore:
    """One open collection: the connection, what the collection records, and how its BM25 is scored."""

    client: Connection
    uri: str
    collection: str
    encoder: EncoderInfo
    backend: Backend
    bm25: bool
    #: BM25 scored with whole-collection statistics the store keeps (Milvus Lite; see ``bm25``), else None.
    terms: CollectionBm25 | None = None
    #: The vector fields' index type, read when first needed (see ``indexes``).
    index_type: str | None = None
    #: Why the collection cannot be written (an older schema, to migrate), or "" when it can.
    read_only: str = ""

    def writable(self) -> None:
        """Raise :class:`SchemaOutdatedError` unless the collection can be written."""
        if self.read_only:
            raise SchemaOutdatedError(self.read_only)

    def output_fields(self, with_vectors: bool) -> list[str]:
        """The stored fields a hit is read from (a read-only older collection lacks the newer ones)."""
        fields = [f for f in schema.ITEM_FIELDS if not (self.read_only and f in schema.V4_FIELDS)]
        return fields + [schema.FUSED, schema.IMAGE] if with_vectors else fields

    def count(self, expr: str) -> int:
        rows = self.client.query(self.collection, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def scan(self, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row matching ``expr``, with ``fields``, read a page at a time."""
        iterator = self.client.query_iterator(self.collection, batch_size=QUERY_PAGE, filter=expr, output_fields=fields)
        try:
            while page := iterator.next():
                yield from page
        finally:
            iterator.close()

    def rows(self, ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        """The rows with these ids (at most one filter's worth, :data:`ID_BATCH`), with ``fields``, in no order."""
        if not ids:
            return []
        return self.client.query(self.collection, filter=id_in(list(ids)), output_fields=fields, limit=len(ids))

    def texts(self, expr: str) -> list[str]:
        """The text of every row matching ``expr``."""
        return [row[schema.TEXT] for row in self.scan(expr, [schema.TEXT])]

    def hits(self, ranked: Sequence[tuple[str, float]], with_vectors: bool) -> list[Hit]:
        """Hits for ``(id, score)`` pairs, in their order; ids no longer stored are left out."""
        by_id = {
            row[schema.ID]: row
            for row in self.rows([item_id for item_id, _ in ranked], self.output_fields(with_vectors))
        }
        return [hit_of(by_id[item_id], score) for item_id, score in ranked if item_id in by_id]

    def require_bm25(self, what: str) -> None:
        if not self.bm25:
            raise NotSupportedError(
                f"{what} needs BM25 full-text search, and collection {self.collection!r} at {self.uri} was created "
                "without it (Milvus server older than 2.5, or bm25=False). Search the vectors alone (leave bm25 out), "
                "or re-ingest into a new collection on Milvus Lite or Milvus >= 2.5."
            )


def hit_of(entity: Mapping[str, Any], score: float) -> Hit:
    embedding = entity.get(schema.FUSED)
    image = entity.get(schema.IMAGE) if entity.get(schema.HAS_IMAGE) else None
    return Hit(
        score=float(score),
        item=schema.from_row(entity),
        embedding=np.asarray(embedding, dtype=np.float32) if embedding is not None else None,
        image_embedding=np.asarray(image, dtype=np.float32) if image is not None else None,
    )


def check_k(k: int) -> int:
    if not 1 <= k <= 16_384:
        raise ValueError(f"k must be between 1 and 16384, not {k}")
    return k


def chunks(values: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
