"""The knowledge store: one Milvus collection of items, on Milvus Lite (shared or in-process) or a Milvus server.

How the store is reached (URI, backend, timeouts, the shared Lite server) is ``connection``'s business."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field
from pymilvus import FunctionType, MilvusClient, MilvusException

from connectors.milvus import schema
from connectors.milvus.blend import SIGNALS, TUNED_BLENDS, Blend, BlendError, TunedBlend
from connectors.milvus.bm25 import SUFFIX as _BM25_SUFFIX
from connectors.milvus.bm25 import CollectionBm25
from connectors.milvus.connection import Connection, ConnectOptions
from connectors.milvus.errors import (
    CollectionNotFoundError,
    DatabaseNotFoundError,
    EncoderMismatchError,
    NotSupportedError,
    StoreError,
    StoreLockedError,
    StoreUnavailableError,
)
from connectors.milvus.filters import Filters, and_, compile_filter, field_in, id_in
from connectors.milvus.fusion import fuse
from connectors.milvus.schema import Backend, EncoderInfo
from rag.items import KnowledgeItem, moved_to

logger = logging.getLogger(__name__)

VectorField = Literal["fused", "image"]
_VECTOR_FIELDS: dict[str, str] = {"fused": schema.FUSED, "image": schema.IMAGE}
_WRITE_BATCH = 1_024
_QUERY_PAGE = 4096
_ID_BATCH = 1_000
_NORM_TOLERANCE = 1e-2
#: Candidates each signal of a blend fetches (or k when larger): fixed, so the top n of any k are the same.
BLEND_CANDIDATES = 100
_T = TypeVar("_T")

__all__ = [
    "CollectionNotFoundError",
    "DatabaseNotFoundError",
    "EncoderMismatchError",
    "Hit",
    "MilvusStore",
    "NotSupportedError",
    "StoreError",
    "StoreLockedError",
    "StoreStats",
    "StoreUnavailableError",
    "list_collections",
    "require_collection",
]


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


class StoreStats(BaseModel):
    collection: str
    uri: str
    backend: Backend
    count: int
    dim: int
    encoder: EncoderInfo
    bm25: bool
    ingest_runtime: dict[str, Any] | None = Field(
        default=None, description="Device, dtype and why, as the last ingest into the collection ran (rag.runtime)."
    )
    tuned_blends: dict[str, TunedBlend] = Field(
        default_factory=dict,
        description="The blends `rag eval --tune` saved, by query kind: queries of that kind use them.",
    )


class MilvusStore:
    """A collection of knowledge items with a fused vector, an image vector, BM25 text and typed metadata.

    Open with :meth:`open`; a local path ending in ``.db`` is Milvus Lite (served to every process by one
    shared server per folder, see ``lite_server``), ``http(s)://host:19530`` a Milvus server. Filters are
    plain dicts or LlamaIndex ``MetadataFilters`` (see ``filters``).
    """

    def __init__(
        self,
        client: Connection,
        *,
        uri: str,
        collection: str,
        encoder: EncoderInfo,
        backend: Backend,
        bm25: bool,
        bm25_stats: bool = False,
    ) -> None:
        self._client = client
        # BM25 scored with whole-collection statistics the store keeps (Milvus Lite; see connectors.milvus.bm25).
        self._terms = CollectionBm25(client, collection) if bm25_stats else None
        self._uri = uri
        self._collection = collection
        self._encoder = encoder
        self._backend = backend
        self._bm25 = bm25
        self._closed = False
        self._index_type: str | None = None  # of the vector fields, read when first needed

    @classmethod
    def open(
        cls,
        uri: str | os.PathLike[str],
        collection: str,
        *,
        encoder_info: EncoderInfo | Mapping[str, Any] | None = None,
        create: bool = True,
        token: str | None = None,
        bm25: bool | None = None,
        options: ConnectOptions | None = None,
    ) -> MilvusStore:
        """Connect, check (or create) the collection, and load it.

        ``encoder_info`` (variant, dim, fingerprint) is required to create a collection; when given
        for an existing one it must match the encoder recorded there. ``bm25``: True requires
        full-text search, False leaves it out, None (default) uses it where the backend has it.
        With ``create=False`` nothing is created: a missing Milvus Lite database or collection raises
        :class:`CollectionNotFoundError`. ``options``: timeout and Milvus Lite mode (default: from ``RAG_*``).
        A store that cannot be reached raises :class:`StoreUnavailableError`, here and on any later call.
        """
        info = EncoderInfo.model_validate(encoder_info) if encoder_info is not None else None
        client = Connection(uri, token=token, create=create, options=options or ConnectOptions.from_settings())
        uri, backend = client.uri, client.backend
        try:
            if client.has_collection(collection):
                recorded, has_bm25, stats = _check_existing(client, uri, collection, info)
            elif not create:
                raise _no_collection(uri, collection, _ours(client.list_collections()))
            elif info is None:
                raise StoreError(f"creating collection {collection!r} needs encoder_info (variant, dim, fingerprint)")
            else:
                recorded, (has_bm25, stats) = info, _create(client, uri, collection, info, backend, bm25)
            client.load_collection(collection)
            if stats:
                CollectionBm25(client, collection).stats.load()
        except BaseException:
            client.close()
            raise
        return cls(
            client, uri=uri, collection=collection, encoder=recorded, backend=backend, bm25=has_bm25, bm25_stats=stats
        )

    @property
    def uri(self) -> str:
        """The Milvus Lite folder or the server address this store was opened on."""
        return self._uri

    @property
    def address(self) -> str:
        """The URI the client is connected to: for a shared Milvus Lite folder, its server's loopback address."""
        return self._client.address

    def ping(self, timeout: float | None = None) -> None:
        """Raise :class:`StoreUnavailableError` unless the store answers (within ``timeout`` seconds, default the
        store's own), and :class:`CollectionNotFoundError` when the collection is gone."""
        if not self._client.has_collection(self._collection, timeout=timeout or self._client.options.timeout):
            raise CollectionNotFoundError(f"collection {self._collection!r} is no longer at {self._uri}")

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def encoder(self) -> EncoderInfo:
        return self._encoder

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def supports_bm25(self) -> bool:
        return self._bm25

    @property
    def keeps_bm25_statistics(self) -> bool:
        """Whether BM25 is scored with statistics this store keeps (Milvus Lite), not by Milvus's BM25 function."""
        return self._terms is not None

    def upsert(
        self, items: Sequence[KnowledgeItem], fused: np.ndarray, image: np.ndarray | None = None, *, new: bool = False
    ) -> int:
        """Insert the items, replacing stored items with the same ids; returns how many rows were written.

        ``fused[i]`` and ``image[i]`` are item i's unit vectors; ``image`` may be None only when no
        item has an image, and its rows for items without an image are ignored. A later duplicate
        id within one call wins. Call :meth:`flush` after a bulk load. ``new``: the caller checked that none of
        the ids is stored yet, so the BM25 statistics need not look up texts being replaced (were one stored
        after all, :meth:`flush` finds the counts off and recounts).
        """
        if not items:
            return 0
        fused = self._check_matrix(fused, len(items), "fused", range(len(items)))
        with_image = [i for i, item in enumerate(items) if item.image is not None]
        if image is not None:
            image = self._check_matrix(image, len(items), "image", with_image)
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
        for batch in _chunks(list(rows_by_id.values()), _WRITE_BATCH):
            if self._terms is not None:
                self._terms.weigh(batch, [] if new else self._stored_texts([row[schema.ID] for row in batch]))
            self._client.upsert(self._collection, batch)
        logger.debug("upserted %d item(s) into %s", len(rows_by_id), self._collection)
        return len(rows_by_id)

    def flush(self) -> None:
        """Seal written data to storage; call once after a bulk load, not after every batch.

        With the store's own BM25 statistics, also brings them and the stored weights up to date. On
        Milvus Lite, also picks the vector index for the collection's size and returns once every row is
        indexed, so that the first search after an ingest is as fast as the next.
        """
        self._client.flush(self._collection)
        if self._terms is not None:
            self._terms.settle(self._count(""))
        if self._backend is Backend.LITE:
            self._settle_index()

    def search(
        self,
        vector: np.ndarray | Sequence[float],
        *,
        field: VectorField = "fused",
        k: int = 10,
        filter: Filters | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The k items whose ``field`` vector has the highest inner product with ``vector``.

        ``field="image"`` searches image vectors and so only items that have an image.
        """
        if field not in _VECTOR_FIELDS:
            raise ValueError(f"field must be one of {sorted(_VECTOR_FIELDS)}, not {field!r}")
        expr = self._filter(filter, images_only=field == "image")
        found = self._vector_search(self._check_query(vector), field, _check_k(k), expr, _output_fields(with_vectors))
        return [_hit(entity, score) for entity, score in found]

    def text_search(
        self, query: str, *, k: int = 10, filter: Filters | None = None, with_vectors: bool = False
    ) -> list[Hit]:
        """BM25 full-text search over the items' text; scores are BM25 scores (higher is better)."""
        self._require_bm25("text_search")
        data, params = self._bm25_query(query)
        result = self._client.search(
            self._collection,
            data=[data],
            anns_field=schema.SPARSE,
            limit=_check_k(k),
            filter=compile_filter(filter),
            output_fields=_output_fields(with_vectors),
            search_params=params,
        )
        # Milvus Lite reports BM25 scores negated; Milvus server reports them as they are.
        return [_hit(hit["entity"], abs(hit["distance"])) for hit in result[0]]

    def hybrid_search(
        self,
        vector: np.ndarray | Sequence[float] | None,
        text: str = "",
        *,
        blend: Blend,
        k: int = 10,
        filter: Filters | None = None,
        only_images: bool = False,
        rrf_k: int = 60,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The k best items by the blend's signals, each searched by Milvus, fused here (``connectors.milvus.fusion``).

        ``vector`` feeds the ``fused`` and ``image`` signals, ``text`` the ``bm25`` one. An item without an
        image answers the ``image`` signal with its one vector (its text's, stored in its image field), so a
        blend neither drops nor favours it for lacking a picture; ``only_images`` restricts every signal to
        items that have an image.
        Scores are on the blend's scale (``connectors.milvus.blend``). Each signal fetches a fixed number of
        candidates (:data:`BLEND_CANDIDATES`, or k when larger) and ties break by id, so for any k up to that
        number the results are the first k of one ranking.
        """
        self.check_signals(blend.signals)
        if "bm25" in blend.signals and not text.strip():
            raise BlendError(f"the blend {blend.describe()} has bm25, which needs query text; this query has none")
        if vector is None and any(signal in _VECTOR_FIELDS for signal in blend.signals):
            raise ValueError(f"the blend {blend.describe()} searches vectors: give a query vector")
        query = self._check_query(vector) if vector is not None else []
        candidates = max(BLEND_CANDIDATES, _check_k(k))
        found = {signal: self._signal(signal, query, text, filter, only_images, candidates) for signal in blend.signals}
        return self._hits(fuse(found, blend, rrf_k)[:k], with_vectors)

    @property
    def signals(self) -> tuple[str, ...]:
        """The signals a blend may search here: both vectors, and bm25 where the collection has it."""
        return SIGNALS if self._bm25 else tuple(s for s in SIGNALS if s != "bm25")

    def check_signals(self, signals: Sequence[str]) -> None:
        """Raise ``NotSupportedError`` when the collection lacks one of ``signals`` (bm25 without BM25)."""
        if "bm25" in signals:
            self._require_bm25("a blend with bm25")

    def tuned_blends(self) -> dict[str, TunedBlend]:
        """The blends ``rag eval --tune`` saved here, by query kind (text, image, composed)."""
        return _tuned(self.properties())

    def save_tuned_blends(self, blends: Mapping[str, TunedBlend]) -> None:
        """Record ``blends`` (by query kind) on the collection, keeping those saved for other kinds."""
        merged = {**self.tuned_blends(), **blends}
        self.set_properties({TUNED_BLENDS: {kind: blend.model_dump(mode="json") for kind, blend in merged.items()}})

    def get(self, ids: Sequence[str]) -> list[KnowledgeItem]:
        """The stored items with these ids, in the order asked; unknown ids are left out."""
        found: dict[str, KnowledgeItem] = {}
        for batch in _chunks(list(dict.fromkeys(ids)), _ID_BATCH):
            for row in self._client.query(
                self._collection, filter=id_in(batch), output_fields=schema.ITEM_FIELDS, limit=len(batch)
            ):
                found[row[schema.ID]] = schema.from_row(row)
        return [found[i] for i in ids if i in found]

    def iter_vectors(
        self, *, filter: Filters | None = None, batch_size: int = 1_000
    ) -> Iterator[tuple[KnowledgeItem, np.ndarray, np.ndarray | None]]:
        """Every stored item (or those matching ``filter``) with its fused and image vector, read in batches.

        The image vector is None for items without an image.
        """
        iterator = self._client.query_iterator(
            self._collection, batch_size=batch_size, filter=compile_filter(filter), output_fields=_output_fields(True)
        )
        try:
            while batch := iterator.next():
                for row in batch:
                    hit = _hit(row, 0.0)
                    yield hit.item, hit.embedding, hit.image_embedding  # type: ignore[misc]
        finally:
            iterator.close()

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored already (for idempotent ingestion)."""
        existing: set[str] = set()
        for batch in _chunks(list(dict.fromkeys(ids)), _ID_BATCH):
            rows = self._client.query(
                self._collection, filter=id_in(batch), output_fields=[schema.ID], limit=len(batch)
            )
            existing.update(row[schema.ID] for row in rows)
        return existing

    def ids_by_source(self, sources: Sequence[str]) -> dict[str, set[str]]:
        """The stored ids of each of these sources, by stored path (for replacing a document's older items)."""
        found: dict[str, set[str]] = {source: set() for source in sources}
        for batch in _chunks(list(found), _ID_BATCH):
            for row in self._scan(field_in(schema.SOURCE, batch), [schema.ID, schema.SOURCE]):
                found[row[schema.SOURCE]].add(row[schema.ID])
        return found

    def documents(
        self, *, sources: Sequence[str] = (), documents: Sequence[str] = (), file_names: Sequence[str] = ()
    ) -> set[tuple[str, str]]:
        """``(stored path, document)`` of every item whose stored path, document or file name is one of these
        (for naming new items uniquely)."""
        asked = ((schema.SOURCE, sources), (schema.DOCUMENT, documents), (schema.FILE_NAME, file_names))
        conditions = [
            field_in(field, batch) for field, values in asked for batch in _chunks(sorted(set(values)), _ID_BATCH)
        ]
        found: set[tuple[str, str]] = set()
        for group in _chunks(conditions, 3):  # one query for a run's usual chunk
            rows = self._scan(" or ".join(f"({c})" for c in group), [schema.SOURCE, schema.DOCUMENT])
            found.update((row[schema.SOURCE], row[schema.DOCUMENT]) for row in rows)
        return found

    def rename(self, documents: Mapping[str, str]) -> dict[str, int]:
        """Move every stored item of each source (by stored path) to its new document: each is named that document
        plus what followed the old one (its anchor). Returns how many items of each source were rewritten (those
        named so already are not)."""
        moved: dict[str, str] = {}  # id: its new document
        for batch in _chunks(sorted(documents), _ID_BATCH):
            for row in self._scan(field_in(schema.SOURCE, batch), [schema.ID, schema.SOURCE, schema.DOCUMENT]):
                if row[schema.DOCUMENT] != documents[row[schema.SOURCE]]:
                    moved[row[schema.ID]] = documents[row[schema.SOURCE]]
        rewritten: Counter[str] = Counter()
        for batch in _chunks(list(moved), _WRITE_BATCH):  # the vectors read a batch at a time
            rows = self._client.query(
                self._collection, filter=id_in(batch), output_fields=_output_fields(True), limit=len(batch)
            )
            items = [schema.from_row(row) for row in rows]
            items = [item.model_copy(update={"name": moved_to(item.name, moved[item.id])}) for item in items]
            fused = np.asarray([row[schema.FUSED] for row in rows], dtype=np.float32)
            image = np.asarray([row[schema.IMAGE] for row in rows], dtype=np.float32)  # the fused one where none
            self.upsert(items, fused, image)
            rewritten.update(item.source for item in items)
        return dict(rewritten)

    def delete(self, *, ids: Sequence[str] | None = None, filter: Filters | None = None) -> int:
        """Delete by ids or by filter (exactly one); returns how many items were deleted."""
        if (ids is None) == (filter is None):
            raise ValueError("delete needs either ids or filter")
        if ids is not None:
            expressions = [id_in(batch) for batch in _chunks(list(dict.fromkeys(ids)), _ID_BATCH)]
        else:
            expressions = [compile_filter(filter)]
        if not all(expressions):
            raise ValueError("refusing to delete with an empty filter; drop() removes the whole collection")
        deleted = 0
        for expr in expressions:
            deleted += self._count(expr)
            if self._terms is not None:
                self._terms.forget(self._texts(expr))
            self._client.delete(self._collection, filter=expr)
        return deleted

    def count(self, filter: Filters | None = None) -> int:
        return self._count(compile_filter(filter))

    def stats(self) -> StoreStats:
        properties = self.properties()
        return StoreStats(
            collection=self._collection,
            uri=self._uri,
            backend=self._backend,
            count=self._count(""),
            dim=self._encoder.dim,
            encoder=self._encoder,
            bm25=self._bm25,
            ingest_runtime=properties.get(schema.INGEST_RUNTIME),
            tuned_blends=_tuned(properties),
        )

    def properties(self) -> dict[str, Any]:
        """What this library recorded on the collection besides the encoder (see ``set_properties``)."""
        stored = self._client.describe_collection(self._collection).get("properties") or {}
        return schema.read_properties(stored)

    def set_properties(self, values: Mapping[str, Any]) -> None:
        """Record JSON-serialisable values on the collection (Milvus collection properties), next to the encoder."""
        self._client.alter_collection_properties(self._collection, properties=schema.write_properties(values))

    def list_collections(self) -> list[str]:
        """Every collection at this URI, ours or not (but not the BM25 statistics kept beside ours)."""
        return _ours(self._client.list_collections())

    def drop(self) -> None:
        """Delete the collection and everything in it, then close the store."""
        self._client.drop_collection(self._collection)
        if self._terms is not None:
            self._terms.stats.drop()
            self._terms = None
        logger.info("dropped collection %s at %s", self._collection, self._uri)
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                if self._terms is not None:
                    self._terms.commit()  # the BM25 counts of writes not flushed
            finally:
                self._client.close()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MilvusStore(uri={self._uri!r}, collection={self._collection!r}, encoder={self._encoder.describe()!r})"

    def _scan(self, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row matching ``expr``, with ``fields``, read a page at a time."""
        iterator = self._client.query_iterator(
            self._collection, batch_size=_QUERY_PAGE, filter=expr, output_fields=fields
        )
        try:
            while page := iterator.next():
                yield from page
        finally:
            iterator.close()

    def _count(self, expr: str) -> int:
        rows = self._client.query(self._collection, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _filter(self, filters: Filters | None, *, images_only: bool) -> str:
        """The expression for ``filters``, restricted to items that have an image where asked."""
        return and_(f"{schema.HAS_IMAGE} == true" if images_only else "", compile_filter(filters))

    def _signal(
        self, signal: str, query: list[float], text: str, filters: Filters | None, only_images: bool, limit: int
    ) -> list[tuple[str, float]]:
        """One signal's candidates of a blend, as ``(id, raw score)``: its field, its query, its filter."""
        expr = self._filter(filters, images_only=only_images)
        if signal != "bm25":
            found = self._vector_search(query, signal, limit, expr, [schema.ID])
            return [(entity[schema.ID], score) for entity, score in found]
        data, params = self._bm25_query(text)
        result = self._client.search(
            self._collection,
            data=[data],
            anns_field=schema.SPARSE,
            limit=limit,
            filter=expr,
            output_fields=[schema.ID],
            search_params=params,
        )
        # Milvus Lite reports BM25 scores negated; the store's own BM25 and Milvus server's are positive.
        return [(hit["id"], abs(hit["distance"])) for hit in result[0]]

    def _vector_search(
        self, query: list[float], field: str, limit: int, expr: str, output_fields: list[str]
    ) -> list[tuple[dict[str, Any], float]]:
        """The ``limit`` best ``(entity, score)`` of a vector field under ``expr``, complete however selective the
        filter: a graph index can come back short when the filter keeps few rows, and then an exact search
        answers instead."""
        result = self._client.search(
            self._collection,
            data=[query],
            anns_field=_VECTOR_FIELDS[field],
            limit=limit,
            filter=expr,
            output_fields=output_fields,
            search_params=self._backend.search_params(limit, filtered=bool(expr)),
        )
        found = [(hit["entity"], float(hit["distance"])) for hit in result[0]]
        if expr and len(found) < limit and self._graph_index() and len(found) < min(limit, self._count(expr)):
            logger.debug("a filtered graph search found %d of %d: searching exactly", len(found), limit)
            return self._exact_search(query, field, limit, expr, output_fields)
        return found

    def _exact_search(
        self, query: list[float], field: str, limit: int, expr: str, output_fields: list[str]
    ) -> list[tuple[dict[str, Any], float]]:
        """Exhaustive inner-product search over the rows matching ``expr`` (read page by page)."""
        target = np.asarray(query, dtype=np.float32)
        best_ids: list[str] = []
        best_scores = np.empty(0, dtype=np.float32)
        iterator = self._client.query_iterator(
            self._collection, batch_size=_QUERY_PAGE, filter=expr, output_fields=[schema.ID, _VECTOR_FIELDS[field]]
        )
        try:
            while page := iterator.next():
                vectors = np.asarray([row[_VECTOR_FIELDS[field]] for row in page], dtype=np.float32)
                best_ids += [row[schema.ID] for row in page]
                best_scores = np.concatenate([best_scores, vectors @ target])
                keep = np.argsort(-best_scores, kind="stable")[:limit]
                best_ids, best_scores = [best_ids[i] for i in keep], best_scores[keep]
        finally:
            iterator.close()
        rows = self._client.query(self._collection, filter=id_in(best_ids), output_fields=output_fields, limit=limit)
        by_id = {row[schema.ID]: row for row in rows}
        return [(by_id[i], float(score)) for i, score in zip(best_ids, best_scores) if i in by_id]

    def _graph_index(self) -> bool:
        """Whether the vectors are searched through a graph (HNSW), which a selective filter can cut short."""
        if self._index_type is None:
            self._index_type = self._client.describe_index(self._collection, schema.FUSED)["index_type"]
        return self._index_type != "FLAT"

    def _settle_index(self) -> None:
        """Milvus Lite: switch the vector index to the one for the collection's size, and have every segment
        indexed before returning. Lite indexes a flushed segment in the background and searches it
        exhaustively meanwhile; dropping an index drains that background work, and loading builds what is
        missing. A BM25 index is built at search time, so dropping and re-creating it costs nothing."""
        wanted = self._backend.dense_index(self._count(""))
        if wanted["index_type"] == "FLAT" and not self._graph_index():
            return  # exact search has nothing to build
        # Building an index takes minutes at scale: these calls wait without the store's timeout.
        self._client.release_collection(self._collection)
        try:
            if self._graph_index() != (wanted["index_type"] != "FLAT"):
                fields, params = (schema.FUSED, schema.IMAGE), MilvusClient.prepare_index_params()
                for name in fields:
                    self._drop_lite_index(name)
                    params.add_index(field_name=name, index_name=name, **wanted)
                logger.info("%s: %s index for the vectors", self._collection, wanted["index_type"])
            elif self._bm25:
                params = MilvusClient.prepare_index_params()
                schema.add_sparse_index(params, bm25_stats=self._terms is not None)
                self._drop_lite_index(schema.SPARSE)
            else:
                params = None
            if params is not None:  # Lite builds it as the collection loads: pymilvus has nothing to wait for
                self._client.create_index(self._collection, params, timeout=None, sync=False)
            self._index_type = wanted["index_type"]
        finally:
            self._client.load_collection(self._collection, timeout=None)

    def _bm25_query(self, text: str) -> tuple[str | dict[int, float], dict[str, str]]:
        """The BM25 query and search parameters: the text for Milvus's BM25 function, or with the store's own
        statistics the query's weighted terms."""
        if self._terms is None:
            return text, {"metric_type": "BM25"}
        return self._terms.query_vector(text), {"metric_type": "IP"}

    def _hits(self, ranked: Sequence[tuple[str, float]], with_vectors: bool) -> list[Hit]:
        """Hits for ``(id, score)`` pairs, in their order; ids no longer stored are left out."""
        ids = [item_id for item_id, _ in ranked]
        rows = (
            self._client.query(
                self._collection, filter=id_in(ids), output_fields=_output_fields(with_vectors), limit=len(ids)
            )
            if ids
            else []
        )
        by_id = {row[schema.ID]: row for row in rows}
        return [_hit(by_id[item_id], score) for item_id, score in ranked if item_id in by_id]

    def _stored_texts(self, ids: list[str]) -> list[str]:
        rows = self._client.query(self._collection, filter=id_in(ids), output_fields=[schema.TEXT], limit=len(ids))
        return [row[schema.TEXT] for row in rows]

    def _texts(self, expr: str) -> list[str]:
        """The text of every row matching ``expr``."""
        iterator = self._client.query_iterator(
            self._collection, batch_size=_QUERY_PAGE, filter=expr, output_fields=[schema.TEXT]
        )
        texts: list[str] = []
        try:
            while page := iterator.next():
                texts.extend(row[schema.TEXT] for row in page)
        finally:
            iterator.close()
        return texts

    def _drop_lite_index(self, field: str) -> None:
        # Milvus Lite names a field's index "<field>_idx" when dropping; any other name drops every index.
        self._client.drop_index(self._collection, f"{field}_idx", timeout=None)  # waits for Lite's background builds

    def _require_bm25(self, what: str) -> None:
        if not self._bm25:
            raise NotSupportedError(
                f"{what} needs BM25 full-text search, and collection {self._collection!r} at {self._uri} was created "
                "without it (Milvus server older than 2.5, or bm25=False). Search the vectors alone (leave bm25 out), "
                "or re-ingest into a new collection on Milvus Lite or Milvus >= 2.5."
            )

    def _check_query(self, vector: np.ndarray | Sequence[float]) -> list[float]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape != (self._encoder.dim,):
            raise ValueError(
                f"query vector has {query.size} values; the collection's encoder gives {self._encoder.dim}"
            )
        if not np.isfinite(query).all():
            raise ValueError("query vector has NaN or infinite values")
        return query.tolist()

    def _check_matrix(self, vectors: np.ndarray, n: int, name: str, rows: Sequence[int]) -> np.ndarray:
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.shape != (n, self._encoder.dim):
            raise ValueError(f"{name} vectors have shape {matrix.shape}; expected ({n}, {self._encoder.dim})")
        checked = matrix[list(rows)]
        if not np.isfinite(checked).all():
            raise ValueError(f"{name} vectors have NaN or infinite values")
        norms = np.linalg.norm(checked, axis=1)
        if norms.size and np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
            raise ValueError(f"{name} vectors must be L2-normalised (norms range {norms.min():.3f}..{norms.max():.3f})")
        return matrix


def list_collections(
    uri: str | os.PathLike[str], *, token: str | None = None, options: ConnectOptions | None = None
) -> list[str]:
    """Every collection at ``uri``, without opening one (nor creating a Milvus Lite database)."""
    client = Connection(uri, token=token, create=False, options=options or ConnectOptions.from_settings())
    try:
        return _ours(client.list_collections())
    finally:
        client.close()


def require_collection(
    uri: str | os.PathLike[str], collection: str, *, token: str | None = None, options: ConnectOptions | None = None
) -> None:
    """Raise :class:`CollectionNotFoundError` unless ``collection`` exists at ``uri``; creates nothing, loads nothing.

    Cheap next to loading an encoder: callers check first, so a mistyped name is reported at once.
    """
    existing = list_collections(uri, token=token, options=options)
    if collection not in existing:
        raise _no_collection(str(uri), collection, existing)


def _no_collection(uri: str, collection: str, existing: Sequence[str]) -> CollectionNotFoundError:
    return CollectionNotFoundError(
        f"there is no collection {collection!r} at {uri}; existing: {', '.join(existing) or 'none'}. "
        "Ingest into it first, or pick another with --collection / RAG_COLLECTION."
    )


def _check_existing(
    client: Connection, uri: str, collection: str, info: EncoderInfo | None
) -> tuple[EncoderInfo, bool, bool]:
    """The recorded encoder, whether the collection has BM25, and whether the store keeps its statistics."""
    description = client.describe_collection(collection)
    properties = description.get("properties") or {}
    recorded = EncoderInfo.from_properties(properties)
    if recorded is None:
        raise StoreError(
            f"collection {collection!r} at {uri} was not made by this library (it records no encoder); "
            "use another collection name, or drop it if it is disposable"
        )
    version = schema.schema_version(properties)
    if version != schema.SCHEMA_VERSION:
        raise StoreError(
            f"collection {collection!r} at {uri} has schema version {version}, this library writes "
            f"{schema.SCHEMA_VERSION}; re-ingest into a new collection"
        )
    if info is not None and not recorded.compatible_with(info):
        raise EncoderMismatchError(
            f"collection {collection!r} at {uri} was made with encoder {recorded.describe()}, but the encoder in "
            f"use is {info.describe()}. Its vectors are not comparable: use the same encoder and weights (RAG_ENCODER, "
            f"RAG_WEIGHTS={recorded.variant}), choose another collection (--collection / RAG_COLLECTION), or drop "
            "this one and re-ingest."
        )
    functions = description.get("functions") or []
    stats = properties.get(schema.BM25_PROPERTY) == schema.BM25_STATISTICS
    has_bm25 = stats or any(f.get("type") == FunctionType.BM25 for f in functions)
    return recorded, has_bm25, stats


def _create(
    client: Connection, uri: str, collection: str, info: EncoderInfo, backend: Backend, bm25: bool | None
) -> tuple[bool, bool]:
    """Create the collection; returns whether it has BM25, and whether the store keeps its statistics (on Lite,
    whose own BM25 is scored per segment)."""
    if bm25 is not False:
        try:
            stats = backend is Backend.LITE
            _create_collection(client, collection, info, backend, bm25=True, bm25_stats=stats)
            return True, stats
        except MilvusException as exc:
            if bm25:
                raise NotSupportedError(f"Milvus at {uri} cannot create a BM25 full-text index: {exc.message}") from exc
            if client.has_collection(collection):
                client.drop_collection(collection)
            logger.warning(
                "Milvus at %s has no BM25 full-text search (%s); creating %r without it: text_search and "
                "hybrid_search will be unavailable",
                uri,
                exc.message,
                collection,
            )
    _create_collection(client, collection, info, backend, bm25=False)
    return False, False


def _create_collection(
    client: Connection, collection: str, info: EncoderInfo, backend: Backend, *, bm25: bool, bm25_stats: bool = False
) -> None:
    properties = info.to_properties()
    if bm25_stats:
        properties[schema.BM25_PROPERTY] = schema.BM25_STATISTICS
    client.create_collection(
        collection,
        schema=schema.build_schema(info.dim, bm25=bm25, bm25_stats=bm25_stats),
        consistency_level="Strong",
        properties=properties,
    )
    # The collection is empty, so there is nothing to wait for (pymilvus would poll each index).
    client.create_index(collection, schema.build_index_params(backend, bm25=bm25, bm25_stats=bm25_stats), sync=False)
    if bm25_stats:
        terms = CollectionBm25(client, collection)
        if terms.stats.exists():  # left by a collection of the same name dropped outside this library
            terms.stats.drop()
        terms.stats.create()
    logger.info("created collection %s (%s, encoder %s, bm25=%s)", collection, backend.value, info.describe(), bm25)


def _ours(collections: Sequence[str]) -> list[str]:
    """The collections, less the BM25 statistics kept beside those of this library."""
    names = set(collections)
    return [name for name in collections if not (name.endswith(_BM25_SUFFIX) and name[: -len(_BM25_SUFFIX)] in names)]


def _output_fields(with_vectors: bool) -> list[str]:
    return schema.ITEM_FIELDS + [schema.FUSED, schema.IMAGE] if with_vectors else list(schema.ITEM_FIELDS)


def _hit(entity: Mapping[str, Any], score: float) -> Hit:
    embedding = entity.get(schema.FUSED)
    image = entity.get(schema.IMAGE) if entity.get(schema.HAS_IMAGE) else None
    return Hit(
        score=float(score),
        item=schema.from_row(entity),
        embedding=np.asarray(embedding, dtype=np.float32) if embedding is not None else None,
        image_embedding=np.asarray(image, dtype=np.float32) if image is not None else None,
    )


def _tuned(properties: Mapping[str, Any]) -> dict[str, TunedBlend]:
    return {kind: TunedBlend.model_validate(value) for kind, value in (properties.get(TUNED_BLENDS) or {}).items()}


def _check_k(k: int) -> int:
    if not 1 <= k <= 16_384:
        raise ValueError(f"k must be between 1 and 16384, not {k}")
    return k


def _chunks(values: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
