"""Open a collection written by :class:`MilvusStore` with LlamaIndex's stock ``MilvusVectorStore``.

The stock store reads our rows as nodes (``ImageNode`` or ``TextNode`` with text and metadata),
searches the fused vectors, and with BM25 also runs LlamaIndex's sparse and hybrid query modes.
Write through :class:`MilvusStore` only: the stock store's ``add`` does not fill our typed fields.

A Milvus Lite path is served by its folder's shared server (``lite_server``): the stock store is handed that
server's URI, and this process stays one of the server's users as long as the stock store lives.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from llama_index.vector_stores.milvus import MilvusVectorStore
from llama_index.vector_stores.milvus.utils import BM25BuiltInFunction

from connectors.milvus import lite_server, schema
from connectors.milvus.connection import ConnectOptions, resolve
from connectors.milvus.store import MilvusStore


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
            dim, bm25 = store.encoder.dim, store.supports_bm25
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
        "sparse_embedding_function": BM25BuiltInFunction(schema.TEXT, schema.SPARSE) if bm25 else None,
        **kwargs,
    }
    address = lease.uri if lease is not None else str(uri)
    vector_store = MilvusVectorStore(uri=address, token=token or "", collection_name=collection, **settings)
    if lease is not None:
        weakref.finalize(vector_store, lease.release)
    # Milvus Lite starts every indexed collection released; a server keeps it loaded (then this is a no-op).
    vector_store.client.load_collection(collection)
    return vector_store
