"""Open a collection written by :class:`MilvusStore` with LlamaIndex's stock ``MilvusVectorStore``.

The stock store reads our rows as nodes (``ImageNode`` or ``TextNode`` with text and metadata),
searches the fused vectors, and with BM25 also runs LlamaIndex's sparse and hybrid query modes:
through Milvus's BM25 function, or on Milvus Lite with the statistics our store keeps
(:class:`StoreBm25`). Write through :class:`MilvusStore` only: the stock store's ``add`` does not
fill our typed fields.

A Milvus Lite path is served by its folder's shared server (``lite_server``): the stock store is handed that
server's URI, and this process stays one of the server's users as long as the stock store lives.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from llama_index.vector_stores.milvus import MilvusVectorStore
from llama_index.vector_stores.milvus.utils import BaseSparseEmbeddingFunction, BM25BuiltInFunction
from pymilvus import MilvusClient

from connectors.milvus import lite_server, schema
from connectors.milvus.bm25 import CollectionBm25
from connectors.milvus.connection import ConnectOptions, resolve
from connectors.milvus.store import MilvusStore


class StoreBm25(BaseSparseEmbeddingFunction):
    """LlamaIndex's sparse function for a collection whose BM25 statistics :class:`MilvusStore` keeps.

    Queries get their weights from the collection's statistics, read through the client given to
    :meth:`bind`; documents are written by ``MilvusStore``.
    """

    def __init__(self, collection: str) -> None:
        self._collection = collection
        self._bm25: CollectionBm25 | None = None

    def bind(self, client: MilvusClient) -> None:
        """Read the statistics through ``client`` (loading them: Milvus Lite opens every collection released)."""
        self._bm25 = CollectionBm25(client, self._collection)
        self._bm25.stats.load()

    def encode_queries(self, queries: list[str]) -> list[dict[int, float]]:
        if self._bm25 is None:
            raise RuntimeError("StoreBm25 reads the collection's statistics: bind() it to a MilvusClient first")
        return [self._bm25.query_vector(query) for query in queries]

    def encode_documents(self, documents: list[str]) -> list[dict[int, float]]:
        raise NotImplementedError("write items through MilvusStore.upsert, which keeps the BM25 statistics")


def llama_vector_store(
    uri: str | os.PathLike[str], collection: str, *, token: str | None = None, **kwargs: Any
) -> MilvusVectorStore:
    """A stock ``MilvusVectorStore`` on our collection, loaded and ready to query.

    ``kwargs`` go to ``MilvusVectorStore`` (e.g. ``hybrid_ranker``, ``use_async_client``).
    """
    options = ConnectOptions.from_settings()
    path, lite_path = resolve(uri, create=False)
    lease = lite_server.acquire(path, idle=options.idle) if lite_path and options.lite == "shared" else None
    try:
        with MilvusStore.open(uri, collection, create=False, token=token, options=options) as store:
            dim, bm25, stats = store.encoder.dim, store.supports_bm25, store.keeps_bm25_statistics
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    settings: dict[str, Any] = {
        "dim": dim,
        "embedding_field": schema.FUSED,
        "text_key": schema.TEXT,
        "doc_id_field": schema.SOURCE,
        # The node copy and the fused vector (MMR reads it): never the image or sparse vectors.
        "output_fields": [schema.NODE_CONTENT, schema.NODE_TYPE, schema.FUSED],
        "enable_sparse": bm25,
        "sparse_embedding_field": schema.SPARSE,
        "sparse_embedding_function": _sparse_function(collection, bm25=bm25, stats=stats),
        **kwargs,
    }
    address = lease.uri if lease is not None else str(uri)
    vector_store = MilvusVectorStore(uri=address, token=token or "", collection_name=collection, **settings)
    if lease is not None:
        weakref.finalize(vector_store, lease.release)
    if isinstance(vector_store.sparse_embedding_function, StoreBm25):
        vector_store.sparse_embedding_function.bind(vector_store.client)
    # Milvus Lite starts every indexed collection released; a server keeps it loaded (then this is a no-op).
    vector_store.client.load_collection(collection)
    return vector_store


def _sparse_function(collection: str, *, bm25: bool, stats: bool) -> BM25BuiltInFunction | StoreBm25 | None:
    if not bm25:
        return None
    return StoreBm25(collection) if stats else BM25BuiltInFunction(schema.TEXT, schema.SPARSE)
