"""A LlamaIndex vector store that reads and writes one of our collections, keeping the library's rules.

``KnowledgeVectorStore`` is what ``KnowledgeBase.vector_store`` returns; the stock LlamaIndex idioms work on it
(``VectorStoreIndex.from_vector_store``, ``IngestionPipeline(vector_store=...)``, ``index.insert``,
``delete_ref_doc``, ``refresh_ref_docs`` with a docstore, ``MultiModalVectorStoreIndex`` with ``image_store``
as its image store), and what they write is what ``rag search``, ``rag ask`` and ``rag serve`` read:

- ``add`` stores each node under its own id, with its document (``ref_doc_id``) and a name unique in the
  collection. Text nodes keep the embedding they come with (a ``VisualizedBGEEmbedding`` made it); one without
  is encoded here. Nodes with a picture are encoded here, picture and text together (the fused vector) and the
  picture alone: the collection needs both. Encoded 64 at a time, written 512 at a time; BM25 statistics follow.
- ``delete(ref_doc_id)`` takes the document's id or the name every surface shows for it (``guide/bugs.md``).
- ``query`` searches the fused vectors (``image_store``: the pictures), or BM25 and the vector together
  (``VectorStoreQueryMode.HYBRID``), or BM25 alone (``TEXT_SEARCH``), with ``MetadataFilters`` or our dict filters.
- Vectors from another embedding model raise ``EncoderMismatchError``, nothing written: every embedding's width is
  compared with the collection's; a query embedding with the collection's encoder's own embedding of the query
  text; of the nodes given with embeddings, the first of every 512 with the encoder's embedding of the text
  LlamaIndex embedded for it (``MetadataMode.EMBED``), so a model of the same width is caught too.
- Image queries: LlamaIndex's ``VectorIndexRetriever`` embeds a ``QueryBundle``'s text only and hands a vector
  store no image, so ``QueryBundle(query_str="", image_path=...)`` reaches ``query`` empty: that raises a
  ``QueryError`` saying what searches by image (``KnowledgeBase.search(image=...)`` or ``.as_retriever()``,
  ``MultiModalVectorStoreIndex``'s ``image_to_image_retrieve``, or the bundle's ``embedding`` set to
  ``VisualizedBGEEmbedding.get_image_embedding(path)``, which the stock retriever passes on as it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

from connectors.milvus import Blend, EncoderMismatchError, MilvusStore, schema, to_llama_node
from connectors.milvus.filters import Filters
from connectors.sources import BadInput, SourceOptions
from connectors.sources.llamaindex import node_item
from rag.embeddings.base import Encoder
from rag.ingest.encode import encode_batch
from rag.ingest.names import Names
from rag.items import KnowledgeItem
from rag.retrieval.modes import QueryError

#: Nodes encoded per batch, and written per upsert (checked: the first given text embedding of each write).
_BATCH = 64
_WRITE = 512
#: Below this cosine, a query embedding was not made by the collection's encoder.
_SAME_MODEL = 0.98


class KnowledgeVectorStore(BasePydanticVectorStore):
    """One collection as a LlamaIndex vector store (see the module); build it with :meth:`of`."""

    stores_text: bool = True
    flat_metadata: bool = False

    _store: MilvusStore = PrivateAttr()
    _encoder: Encoder = PrivateAttr()
    _field: Literal["fused", "image"] = PrivateAttr(default="fused")
    _options: SourceOptions = PrivateAttr()

    @classmethod
    def of(
        cls, store: MilvusStore, encoder: Encoder, *, field: Literal["fused", "image"] = "fused"
    ) -> KnowledgeVectorStore:
        """The store over ``store``'s collection, encoding with ``encoder`` (checked against the collection's)."""
        from connectors.milvus import EncoderInfo

        if not store.encoder.compatible_with(EncoderInfo.of(encoder)):
            raise EncoderMismatchError(
                f"collection {store.collection!r} was made with encoder {store.encoder.describe()}, not "
                f"{EncoderInfo.of(encoder).describe()}: their vectors are not comparable"
            )
        vector_store = cls()
        vector_store._store = store
        vector_store._encoder = encoder
        vector_store._field = field
        vector_store._options = SourceOptions(text_window=encoder.text_window)
        return vector_store

    @classmethod
    def class_name(cls) -> str:
        return "KnowledgeVectorStore"

    @property
    def client(self) -> MilvusStore:
        return self._store

    @property
    def image_store(self) -> KnowledgeVectorStore:
        """The same collection, searched by its pictures: ``MultiModalVectorStoreIndex``'s image store."""
        return KnowledgeVectorStore.of(self._store, self._encoder, field="image")

    # -- writes ----------------------------------------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Store the nodes (each under its id) in batches; returns their ids."""
        items: list[KnowledgeItem] = []
        given: list[list[float] | None] = []
        problems = []
        for node in nodes:
            try:
                items.append(node_item(node, self._options))
                given.append(node.embedding)
            except BadInput as e:
                problems.append(f"node {node.node_id}: {e.reason}")
        if problems:
            raise ValueError(f"{len(problems)} node(s) cannot be stored, nothing written: {'; '.join(problems)}")
        self._check_models(nodes, items)
        names = Names(self._store)
        items = names.assign(items)
        for start in range(0, len(items), _WRITE):  # encoded 64 at a time, written 512 at a time
            chunk = items[start : start + _WRITE]
            parts = [
                self._vectors(chunk[i : i + _BATCH], given[start + i : start + i + _BATCH])
                for i in range(0, len(chunk), _BATCH)
            ]
            self._store.upsert(chunk, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        names.finish()
        self._store.flush()
        return [item.id for item in items]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every item of the document: by its id, else by the name surfaces show for it."""
        if not self._store.delete(filter={schema.REF_DOC_ID: ref_doc_id}):
            self._store.delete(filter={schema.DOCUMENT: ref_doc_id})

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete the nodes with these ids (that also match ``filters``), or every node ``filters`` matches."""
        selected = _selection(node_ids, filters)
        if selected is not None:
            self._store.delete(filter=selected)

    def clear(self) -> None:
        """Delete every item; the collection stays."""
        self._store.delete(filter={schema.ID: {"!=": ""}})

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        selected = _selection(node_ids, filters)
        found = self._store.iter_vectors(filter=selected) if selected is not None else iter(())
        return [to_llama_node(item) for item, _, _ in found]

    # -- queries ---------------------------------------------------------------------------------------------

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        k = query.similarity_top_k
        selected = _selection(query.node_ids, query.filters, query.doc_ids)
        if query.mode is VectorStoreQueryMode.TEXT_SEARCH:
            hits = self._store.text_search(_text(query), k=k, filter=selected)
        elif query.mode is VectorStoreQueryMode.HYBRID:
            blend = Blend.hybrid("image" if self._field == "image" else "fused")
            hits = self._store.hybrid_search(
                self._query_vector(query),
                _text(query),
                blend=blend,
                k=k,
                filter=selected,
                only_images=self._field == "image",
            )
        elif query.mode is VectorStoreQueryMode.DEFAULT:
            hits = self._store.search(self._query_vector(query), field=self._field, k=k, filter=selected)
        else:
            modes = ", ".join(m.value for m in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.HYBRID,
                                                 VectorStoreQueryMode.TEXT_SEARCH))  # fmt: skip
            raise ValueError(f"query mode {query.mode.value!r} is not supported; the modes are {modes}")
        return VectorStoreQueryResult(
            nodes=[to_llama_node(hit.item) for hit in hits],
            similarities=[hit.score for hit in hits],
            ids=[hit.id for hit in hits],
        )

    def _query_vector(self, query: VectorStoreQuery) -> np.ndarray:
        """The query's embedding, checked: as wide as the collection's, and (for a text) the one the collection's
        encoder gives the text; the encoder's own when the query came without one."""
        ours = self._encoder.encode_text([query.query_str])[0] if query.query_str else None
        if query.query_embedding is None:
            if ours is None:
                raise QueryError(_NOTHING_TO_SEARCH)
            return ours
        given = self._checked(query.query_embedding)
        if ours is not None and float(np.dot(given, ours)) < _SAME_MODEL:
            raise self._mismatch("the query embedding is not the collection encoder's embedding of the query text")
        return given

    def _check_models(self, nodes: Sequence[BaseNode], items: list[KnowledgeItem]) -> None:
        """Refuse text embeddings another model made: the first given one of every write is compared with the
        collection encoder's embedding of what LlamaIndex embeds for the node (its text and embed metadata), or of
        its bare text; one encoder call for the whole ``add``."""
        probes: list[tuple[np.ndarray, list[str]]] = []
        for start in range(0, len(nodes), _WRITE):
            for node, item in zip(nodes[start : start + _WRITE], items[start : start + _WRITE]):
                if node.embedding is not None and item.image is None:
                    embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
                    probes.append((self._checked(node.embedding), list(dict.fromkeys([embedded, item.text]))))
                    break
        if not probes:
            return
        ours = iter(self._encoder.encode_text([text for _, texts in probes for text in texts]))
        for given, texts in probes:
            if max(float(np.dot(given, next(ours))) for _ in texts) < _SAME_MODEL:
                raise self._mismatch("the nodes' embeddings are not the collection encoder's embeddings of their text")

    def _vectors(self, items: list[KnowledgeItem], given: list[list[float] | None]) -> tuple[np.ndarray, np.ndarray]:
        """Fused and image vectors: the given text embeddings kept, the rest encoded (pictures always)."""
        to_encode = [i for i, item in enumerate(items) if item.image is not None or given[i] is None]
        fused = np.zeros((len(items), self._store.encoder.dim), dtype=np.float32)
        image = np.zeros_like(fused)
        for i, vector in enumerate(given):
            if i not in to_encode and vector is not None:
                fused[i] = self._checked(vector)
        if to_encode:
            chosen = [items[i] for i in to_encode]
            pending = self._encoder.preprocessor.submit([item.image.uri for item in chosen if item.image is not None])
            prepared = iter(pending.results())
            images = [next(prepared) if item.image is not None else None for item in chosen]
            failed = [str(p) for p in images if isinstance(p, Exception)]
            if failed:
                raise ValueError(f"{len(failed)} image(s) cannot be read, nothing written: {'; '.join(failed)}")
            fused[to_encode], image[to_encode] = encode_batch(self._encoder, chosen, images)  # type: ignore[arg-type]
        return fused, image

    def _checked(self, embedding: Sequence[float]) -> np.ndarray:
        vector = np.asarray(embedding, dtype=np.float32)
        if vector.shape != (self._store.encoder.dim,):
            raise self._mismatch(
                f"an embedding has {vector.size} dimensions, the collection's {self._store.encoder.dim}"
            )
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def _mismatch(self, what: str) -> EncoderMismatchError:
        return EncoderMismatchError(
            f"{what}: collection {self._store.collection!r} was made with encoder {self._store.encoder.describe()}. "
            "Embed with the collection's encoder (rag.VisualizedBGEEmbedding with the same weights), or leave the "
            "embeddings out and let the store compute them."
        )


_NOTHING_TO_SEARCH = (
    "the query carries neither a text nor an embedding. LlamaIndex's VectorIndexRetriever embeds a QueryBundle's "
    "text only and passes no image to a vector store, so a query by {image} alone arrives empty here. Search by "
    "image with KnowledgeBase.search(image=...) or KnowledgeBase.as_retriever(), with MultiModalVectorStoreIndex's "
    "retriever (image_to_image_retrieve), or give the QueryBundle its embedding: "
    "QueryBundle(query_str='', embedding=VisualizedBGEEmbedding(...).get_image_embedding(path))"
)


def _text(query: VectorStoreQuery) -> str:
    if not query.query_str:
        raise ValueError(f"{query.mode.value} search needs the query's text (query_str)")
    return query.query_str


def _selection(
    node_ids: list[str] | None, filters: MetadataFilters | None, doc_ids: list[str] | None = None
) -> Filters | None:
    """The filter selecting these node ids and documents among those ``filters`` match; None when nothing at all
    is asked. Empty lists ask nothing (LlamaIndex's retrievers pass them so)."""
    parts: list[MetadataFilter | MetadataFilters] = []
    if node_ids:
        parts.append(MetadataFilter(key=schema.ID, value=list(node_ids), operator=FilterOperator.IN))
    if doc_ids:
        parts.append(MetadataFilter(key=schema.REF_DOC_ID, value=list(doc_ids), operator=FilterOperator.IN))
    if filters is not None and filters.filters:
        parts.append(filters)
    if not parts:
        return None
    return MetadataFilters(filters=parts, condition=FilterCondition.AND)
