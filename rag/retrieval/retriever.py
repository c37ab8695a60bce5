"""One LlamaIndex retriever for every mode: a ``QueryBundle`` → an encoder call → a store search → nodes."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal, Sequence

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import MetadataFilters

from connectors.milvus import EncoderInfo, EncoderMismatchError, Filters, Hit, MilvusStore, compile_filter, to_llama_node
from connectors.milvus.schema import MODALITY
from rag.embeddings.base import Encoder, FusedNotSupportedError

from .modes import Mode, QueryKind, check_query, default_mode

logger = logging.getLogger(__name__)

_MAX_K = 16_384


class MultimodalRetriever(BaseRetriever):
    """Retrieves knowledge items for text, image and composed (image + text) queries.

    The mode comes from ``mode`` when given, else from the bundle (see ``rag.retrieval.modes``).
    Each result is a ``NodeWithScore`` whose node is an ``ImageNode`` (image path or URL, mime
    type, text, metadata) or a ``TextNode``.

    - ``filters``: a dict or LlamaIndex ``MetadataFilters`` (see ``connectors.milvus.filters``).
    - ``hybrid``: fuse the dense search with BM25 over the items' text (``fusion`` ``"rrf"`` or
      ``"weighted"`` with ``weights`` = (dense, text)); used for queries that have text. On a
      collection without BM25 it falls back to dense search, with a warning.
    - ``score_threshold``: drop hits scoring below it. Dense scores are cosine similarities;
      hybrid scores are the fused scores (RRF: sums of 1/(60 + rank)).
    - ``dedup_threshold``: of hits whose searched vectors have a cosine above it (the same
      picture, the same item stored twice), keep the best; None keeps every hit.
    """

    def __init__(
        self,
        store: MilvusStore,
        encoder: Encoder,
        *,
        mode: Mode | str | None = None,
        top_k: int = 5,
        filters: Filters | None = None,
        hybrid: bool = False,
        fusion: Literal["rrf", "weighted"] = "rrf",
        weights: tuple[float, float] = (0.5, 0.5),
        score_threshold: float | None = None,
        dedup_threshold: float | None = 0.995,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if not 1 <= top_k <= _MAX_K:
            raise ValueError(f"top_k must be between 1 and {_MAX_K}, not {top_k}")
        if fusion not in ("rrf", "weighted"):
            raise ValueError(f"fusion must be 'rrf' or 'weighted', not {fusion!r}")
        info = EncoderInfo.of(encoder)
        if not store.encoder.compatible_with(info):
            raise EncoderMismatchError(
                f"collection {store.collection!r} was made with encoder {store.encoder.describe()}, but the "
                f"retriever's encoder is {info.describe()}: their vectors are not comparable"
            )
        compile_filter(filters)  # a bad filter fails here, not at the first query
        if hybrid and not store.supports_bm25:
            logger.warning(
                "collection %r has no BM25 full-text index: hybrid search is off, searching dense vectors only",
                store.collection,
            )
        super().__init__(callback_manager=callback_manager)
        self.store = store
        self.encoder = encoder
        self.mode = Mode(mode) if mode is not None else None
        self.top_k = top_k
        self.filters = filters
        self.hybrid = hybrid and store.supports_bm25
        self.fusion = fusion
        self.weights = weights
        self.score_threshold = score_threshold
        self.dedup_threshold = dedup_threshold

    def resolve_mode(self, query: QueryBundle) -> Mode:
        """The mode this retriever uses for ``query``.

        Raises ``ValueError`` when the bundle lacks the mode's inputs, ``FusedNotSupportedError``
        for a composed query on an encoder without fused embeddings.
        """
        mode = self.mode or default_mode(query)
        check_query(query, mode)
        if mode.query is QueryKind.COMPOSED and not self.encoder.supports_fused:
            raise FusedNotSupportedError(
                f"encoder {self.encoder.name} has no joint image+text embedding, so mode {mode.value} is not "
                "available; query with the text or the image alone"
            )
        return mode

    def embed(self, query: QueryBundle, mode: Mode) -> np.ndarray:
        """The query vector ``mode`` compares with the stored vectors."""
        if mode.query is QueryKind.TEXT:
            return self.encoder.encode_text([query.query_str])[0]
        if mode.query is QueryKind.IMAGE:
            return self.encoder.encode_image([query.image_path])[0]
        return self.encoder.encode_fused([query.image_path], [query.query_str])[0]

    def search(self, vector: np.ndarray, mode: Mode, text: str = "") -> list[NodeWithScore]:
        """The top-k nodes for an already embedded query; ``text`` feeds BM25 when hybrid is on."""
        hits = self._search_hits(vector, mode, text)
        return [NodeWithScore(node=to_llama_node(hit.item), score=hit.score) for hit in hits]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        mode = self.resolve_mode(query_bundle)
        return self.search(self.embed(query_bundle, mode), mode, query_bundle.query_str)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def _search_hits(self, vector: np.ndarray, mode: Mode, text: str) -> list[Hit]:
        filters = self._filters_for(mode)
        hybrid = self.hybrid and bool(text.strip())
        if self.hybrid and not hybrid:
            logger.info("hybrid search needs query text; this %s query is searched on dense vectors only", mode.value)
        dedup = self.dedup_threshold is not None
        limit = min(2 * self.top_k + 8, _MAX_K) if dedup else self.top_k
        while True:
            if hybrid:
                hits = self.store.hybrid_search(
                    vector, text, field=mode.field, k=limit, filter=filters, fusion=self.fusion,
                    weights=self.weights, with_vectors=dedup,
                )
            else:
                hits = self.store.search(vector, field=mode.field, k=limit, filter=filters, with_vectors=dedup)
            above = [h for h in hits if self.score_threshold is None or h.score >= self.score_threshold]
            kept = _dedupe(above, mode.field, self.dedup_threshold) if dedup else above  # type: ignore[arg-type]
            # No more to fetch: the store ran out, the threshold cut the list, or k is at its maximum.
            exhausted = len(hits) < limit or len(above) < len(hits) or limit == _MAX_K
            if len(kept) >= self.top_k or exhausted:
                return kept[: self.top_k]
            limit = min(4 * limit, _MAX_K)

    def _filters_for(self, mode: Mode) -> Filters | None:
        """The caller's filters and the mode's target condition, joined with AND."""
        target = mode.target_filter
        if target is None:
            return self.filters
        if self.filters is None:
            return MetadataFilters(filters=[target])
        if isinstance(self.filters, MetadataFilters):
            return MetadataFilters(filters=[target, self.filters])
        if MODALITY in self.filters:
            raise ValueError(
                f"mode {mode.value} sets the modality condition itself; pass MetadataFilters to combine it with "
                "another condition on modality"
            )
        return {**self.filters, MODALITY: {target.operator.value: target.value}}


def _dedupe(hits: Sequence[Hit], field: Literal["fused", "image"], threshold: float) -> list[Hit]:
    """The hits, best first, without those whose vector is within ``threshold`` cosine of a better one."""
    kept: list[Hit] = []
    vectors: list[np.ndarray] = []
    for hit in hits:
        vector = hit.image_embedding if field == "image" else hit.embedding
        if vector is None or not any(float(vector @ other) > threshold for other in vectors):
            kept.append(hit)
            if vector is not None:
                vectors.append(vector)
    return kept
