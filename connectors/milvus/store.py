"""The knowledge store: one Milvus collection of items, on Milvus Lite (shared or in-process) or a Milvus server.

:class:`MilvusStore` is the facade callers use. Its work is done in rooms of one purpose each, functions of the
open collection (``core.StoreCore``): ``lifecycle`` (open, create, list, drop), ``writes`` (upsert, flush,
delete), ``reads`` (by id, in bulk), ``search`` (vectors, BM25 text, blends), ``indexes`` (index choice and
Lite's index upkeep), ``names`` (stored paths, renames) and ``properties`` (what a collection records, stats).
The store's own BM25 statistics are ``bm25``'s; how the store is reached is ``connection``'s."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from connectors.milvus import lifecycle, names, properties, reads, search, writes
from connectors.milvus.blend import Blend, TunedBlend
from connectors.milvus.connection import ConnectOptions
from connectors.milvus.core import Hit, StoreCore
from connectors.milvus.errors import (
    CollectionNotFoundError,
    DatabaseNotFoundError,
    EncoderMismatchError,
    NotSupportedError,
    SchemaOutdatedError,
    StoreError,
    StoreLockedError,
    StoreUnavailableError,
)
from connectors.milvus.filters import Filters, compile_filter
from connectors.milvus.lifecycle import list_collections, require_collection
from connectors.milvus.properties import StoreStats
from connectors.milvus.schema import Backend, EncoderInfo
from connectors.milvus.search import BLEND_CANDIDATES, VectorField
from rag.items import KnowledgeItem

__all__ = [
    "BLEND_CANDIDATES",
    "CollectionNotFoundError",
    "DatabaseNotFoundError",
    "EncoderMismatchError",
    "Hit",
    "MilvusStore",
    "NotSupportedError",
    "SchemaOutdatedError",
    "StoreError",
    "StoreLockedError",
    "StoreStats",
    "StoreUnavailableError",
    "VectorField",
    "list_collections",
    "require_collection",
]


class MilvusStore:
    """A collection of knowledge items with a fused vector, an image vector, BM25 text and typed metadata.

    Open with :meth:`open`; a local path ending in ``.db`` is Milvus Lite (served to every process by one
    shared server per folder, see ``lite_server``), ``http(s)://host:19530`` a Milvus server. Filters are
    plain dicts or LlamaIndex ``MetadataFilters`` (see ``filters``).
    """

    def __init__(self, core: StoreCore) -> None:
        self._core = core
        self._closed = False

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
        core = lifecycle.open_core(
            uri,
            collection,
            info=info,
            create=create,
            token=token,
            bm25=bm25,
            options=options or ConnectOptions.from_settings(),
        )
        return cls(core)

    @property
    def uri(self) -> str:
        """The Milvus Lite folder or the server address this store was opened on."""
        return self._core.uri

    @property
    def address(self) -> str:
        """The URI the client is connected to: for a shared Milvus Lite folder, its server's loopback address."""
        return self._core.client.address

    def ping(self, timeout: float | None = None) -> None:
        """Raise :class:`StoreUnavailableError` unless the store answers (within ``timeout`` seconds, default the
        store's own), and :class:`CollectionNotFoundError` when the collection is gone."""
        client = self._core.client
        if not client.has_collection(self.collection, timeout=timeout or client.options.timeout):
            raise CollectionNotFoundError(f"collection {self.collection!r} is no longer at {self.uri}")

    @property
    def collection(self) -> str:
        return self._core.collection

    @property
    def encoder(self) -> EncoderInfo:
        return self._core.encoder

    @property
    def backend(self) -> Backend:
        return self._core.backend

    @property
    def supports_bm25(self) -> bool:
        return self._core.bm25

    @property
    def keeps_bm25_statistics(self) -> bool:
        """Whether BM25 is scored with statistics this store keeps (Milvus Lite), not by Milvus's BM25 function."""
        return self._core.terms is not None

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
        return writes.upsert(self._core, items, fused, image, new=new)

    def flush(self) -> None:
        """Seal written data to storage; call once after a bulk load, not after every batch.

        With the store's own BM25 statistics, also brings them and the stored weights up to date. On
        Milvus Lite, also picks the vector index for the collection's size and returns once every row is
        indexed, so that the first search after an ingest is as fast as the next.
        """
        writes.flush(self._core)

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
        return search.search(self._core, vector, field=field, k=k, filter=filter, with_vectors=with_vectors)

    def text_search(
        self, query: str, *, k: int = 10, filter: Filters | None = None, with_vectors: bool = False
    ) -> list[Hit]:
        """BM25 full-text search over the items' text; scores are BM25 scores (higher is better)."""
        return search.text_search(self._core, query, k=k, filter=filter, with_vectors=with_vectors)

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
        return search.hybrid_search(
            self._core,
            vector,
            text,
            blend=blend,
            k=k,
            filter=filter,
            only_images=only_images,
            rrf_k=rrf_k,
            with_vectors=with_vectors,
        )

    @property
    def signals(self) -> tuple[str, ...]:
        """The signals a blend may search here: both vectors, and bm25 where the collection has it."""
        return search.signals(self._core)

    def check_signals(self, signals: Sequence[str]) -> None:
        """Raise ``NotSupportedError`` when the collection lacks one of ``signals`` (bm25 without BM25)."""
        search.check_signals(self._core, signals)

    def tuned_blends(self) -> dict[str, TunedBlend]:
        """The blends ``rag eval --tune`` saved here, by query kind (text, image, composed)."""
        return properties.tuned_blends(self._core)

    def save_tuned_blends(self, blends: Mapping[str, TunedBlend]) -> None:
        """Record ``blends`` (by query kind) on the collection, keeping those saved for other kinds."""
        properties.save_tuned_blends(self._core, blends)

    def get(self, ids: Sequence[str]) -> list[KnowledgeItem]:
        """The stored items with these ids, in the order asked; unknown ids are left out."""
        return reads.get(self._core, ids)

    def iter_vectors(
        self, *, filter: Filters | None = None, batch_size: int = 1_000
    ) -> Iterator[tuple[KnowledgeItem, np.ndarray, np.ndarray | None]]:
        """Every stored item (or those matching ``filter``) with its fused and image vector, read in batches.

        The image vector is None for items without an image.
        """
        return reads.iter_vectors(self._core, filter=filter, batch_size=batch_size)

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored already (for idempotent ingestion)."""
        return reads.existing_ids(self._core, ids)

    def ids_by_document(self, documents: Sequence[str]) -> dict[str, set[str]]:
        """The stored ids of each of these documents (``ref_doc_id``): what a re-ingest of one replaces."""
        return names.ids_by_document(self._core, documents)

    @property
    def read_only(self) -> str:
        """Why the collection cannot be written (an older schema: ``rag migrate`` copies it), or "" when it can."""
        return self._core.read_only

    def ids_by_source(self, sources: Sequence[str]) -> dict[str, set[str]]:
        """The stored ids of each of these sources, by stored path (for replacing a document's older items)."""
        return names.ids_by_source(self._core, sources)

    def sources_within(self, folders: Sequence[str], files: Sequence[str] = ()) -> dict[str, set[str]]:
        """The stored ids of every stored path under ``folders`` or among ``files`` (the scope of a prune)."""
        return names.sources_within(self._core, folders, files)

    def documents(
        self, *, sources: Sequence[str] = (), documents: Sequence[str] = (), file_names: Sequence[str] = ()
    ) -> set[tuple[str, str]]:
        """``(stored path, document)`` of every item whose stored path, document or file name is one of these
        (for naming new items uniquely)."""
        return names.documents(self._core, sources=sources, documents=documents, file_names=file_names)

    def rename(self, documents: Mapping[str, str]) -> dict[str, int]:
        """Move every stored item of each source (by stored path) to its new document: each is named that document
        plus what followed the old one (its anchor). Returns how many items of each source were rewritten (those
        named so already are not)."""
        return names.rename(self._core, documents)

    def delete(self, *, ids: Sequence[str] | None = None, filter: Filters | None = None) -> int:
        """Delete by ids or by filter (exactly one); returns how many items were deleted."""
        return writes.delete(self._core, ids=ids, filter=filter)

    def count(self, filter: Filters | None = None) -> int:
        return self._core.count(compile_filter(filter))

    def stats(self) -> StoreStats:
        return properties.stats(self._core)

    def properties(self) -> dict[str, Any]:
        """What this library recorded on the collection besides the encoder (see ``set_properties``)."""
        return properties.properties(self._core)

    def set_properties(self, values: Mapping[str, Any]) -> None:
        """Record JSON-serialisable values on the collection (Milvus collection properties), next to the encoder."""
        properties.set_properties(self._core, values)

    def list_collections(self) -> list[str]:
        """Every collection at this URI, ours or not (but not the BM25 statistics kept beside ours)."""
        return lifecycle.ours(self._core.client.list_collections())

    def drop(self) -> None:
        """Delete the collection and everything in it, then close the store."""
        lifecycle.drop(self._core)
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            lifecycle.close(self._core)

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MilvusStore(uri={self.uri!r}, collection={self.collection!r}, encoder={self.encoder.describe()!r})"
