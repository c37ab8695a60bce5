"""One LlamaIndex retriever for every mode: a ``QueryBundle`` → an encoder call → a store search → nodes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import MetadataFilters

from connectors.milvus import (
    Blend,
    BlendError,
    EncoderInfo,
    EncoderMismatchError,
    Filters,
    Hit,
    MilvusStore,
    compile_filter,
    parse_filters,
    to_llama_node,
)
from connectors.milvus.blend import FUSIONS, Fusion, check_threshold, scale_of
from connectors.milvus.schema import MODALITY
from rag.embeddings.base import Encoder, FusedNotSupportedError
from rag.items import KnowledgeItem, Modality
from rag.settings import Settings

from .evidence import MERGED_DUPLICATES, annotate
from .modes import Mode, QueryError, QueryKind, Target, check_query, default_mode, searched_modalities
from .options import MAX_TOP_K, QueryOptions, literal
from .rerank import reranker_from_settings

logger = logging.getLogger(__name__)


class MultimodalRetriever(BaseRetriever):
    """Retrieves knowledge items for text, image and composed (image + text) queries.

    The mode comes from ``mode`` when given, else from the bundle (see ``rag.retrieval.modes``).
    Each result is a ``NodeWithScore`` whose node is an ``ImageNode`` (image path or URL, mime
    type, text, metadata) or a ``TextNode``.

    - ``filters``: a dict or LlamaIndex ``MetadataFilters`` (see ``connectors.milvus.filters``).
    - ``blend``: search several stored signals at once and let Milvus fuse them in one hybrid
      search: ``{"fused": 0.6, "image": 0.3, "bm25": 0.1}``, ``"fused=0.6,image=0.3,bm25=0.1"``
      or a ``Blend`` (``connectors.milvus.blend``). ``fusion``: ``"weighted"`` (default) or ``"rrf"``.
      The mode still chooses the query's embedding and the items that qualify.
    - ``hybrid``: the mode's vector and BM25 in equal parts (``fusion`` ``"rrf"`` by default),
      for queries that have text: a shorthand for that blend.
    - With neither and no ``mode``, a query uses the blend ``rag eval --tune`` saved on the
      collection for its kind (text, image, composed) when there is one, else its mode's vector.
    - ``score_threshold``: drop hits scoring below it, on the scale of the search's scores
      (``ScoreScale``): cosine -1..1 for one vector, 0..1 for weighted blends; refused for RRF,
      whose scores are positions.
    - ``dedup``: merge true duplicates (the same item, or the same image bytes with the same text)
      into the best of them; the kept node's metadata lists the merged ids (``merged_duplicates``).
    - ``dedup_threshold``: also merge hits whose vectors (the image vectors when only images are
      compared, else the fused ones) have a cosine above it, e.g. 0.995 for re-encoded copies of a
      picture. None (default): no merging by similarity.
    - ``reranker``: a node postprocessor (``CrossEncoderReranker``) that scores ``rerank_candidates``
      retrieved candidates (default 50) and keeps the best ``top_k``, each with its ``rerank_score``.
    """

    def __init__(
        self,
        store: MilvusStore,
        encoder: Encoder,
        *,
        mode: Mode | str | None = None,
        top_k: int = 5,
        filters: Filters | None = None,
        blend: Blend | Mapping[str, float] | str | None = None,
        hybrid: bool = False,
        fusion: Fusion | None = None,
        score_threshold: float | None = None,
        dedup: bool = True,
        dedup_threshold: float | None = None,
        reranker: BaseNodePostprocessor | None = None,
        rerank_candidates: int = 50,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}")
        if mode is not None and mode not in {m.value for m in Mode}:
            modes = ", ".join(m.value for m in Mode)
            raise QueryError(f"unknown {{mode}} {literal(repr(mode))}; the modes are {modes}")
        if fusion is not None and fusion not in FUSIONS:
            raise ValueError(f"fusion must be 'rrf' or 'weighted', not {fusion!r}")
        if blend is not None and hybrid:
            raise BlendError("give a blend or hybrid, not both: hybrid is the blend of the mode's vector and bm25")
        info = EncoderInfo.of(encoder)
        if not store.encoder.compatible_with(info):
            raise EncoderMismatchError(
                f"collection {store.collection!r} was made with encoder {store.encoder.describe()}, but the "
                f"retriever's encoder is {info.describe()}: their vectors are not comparable"
            )
        if isinstance(filters, str):  # as people write them: "tags=red, source=a.md"
            filters = parse_filters(filters)
        compile_filter(filters)  # a bad filter fails here, not at the first query
        if mode is not None:
            searched_modalities(Mode(mode), filters)  # and so does a modality the mode never returns
        super().__init__(callback_manager=callback_manager)
        self.store = store
        self.encoder = encoder
        self.mode = Mode(mode) if mode is not None else None
        self.top_k = top_k
        self.filters = filters
        self.blend = _as_blend(blend, fusion or "weighted") if blend is not None else None
        self.hybrid = hybrid
        self.hybrid_fusion: Fusion = fusion or "rrf"
        if self.blend is not None:
            self._check_signals(self.blend.signals)
        if hybrid:
            self._check_signals(("bm25",))
        #: The blends saved by ``rag eval --tune``, by query kind; used when nothing else is asked.
        self.tuned: dict[str, Blend] = (
            {kind: saved.blend for kind, saved in store.tuned_blends().items()}
            if self.mode is None and self.blend is None and not hybrid
            else {}
        )
        self.score_threshold = score_threshold
        # Checked here on the scale asked for, and again per query on the scale used (a tuned blend's).
        asked = self.blend or (Blend.hybrid(fusion=self.hybrid_fusion) if hybrid else None)
        check_threshold(score_threshold, scale_of(asked))
        self.dedup = dedup
        self.dedup_threshold = dedup_threshold
        self.reranker = reranker
        self.rerank_candidates = min(max(rerank_candidates, top_k), MAX_TOP_K)

    @classmethod
    def from_options(
        cls,
        store: MilvusStore,
        encoder: Encoder,
        options: QueryOptions | None = None,
        *,
        settings: Settings | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> MultimodalRetriever:
        """A retriever searching as ``options`` say (checked already); ``top_k`` defaults to ``settings.top_k``
        (``Settings()``: ``RAG_TOP_K``), the cross-encoder to ``RAG_RERANKER``, which loads here (a model that
        is not a one-label sequence classifier raises ``CheckpointError`` before anything is searched)."""
        options = options or QueryOptions()
        settings = settings or Settings()
        top_k = options.top_k or settings.top_k
        reranker = reranker_from_settings(settings, options.reranker, top_n=top_k, normalize=options.rerank_normalize)
        return cls(
            store,
            encoder,
            mode=options.mode,
            top_k=top_k,
            filters=options.parsed_filters,
            blend=options.parsed_blend,
            hybrid=options.hybrid,
            fusion=options.fusion,
            score_threshold=options.min_score,
            dedup=options.dedup,
            dedup_threshold=options.merge_similar,
            reranker=reranker,
            rerank_candidates=options.rerank_candidates or settings.rerank_candidates,
            callback_manager=callback_manager,
        )

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
        image = query.image_path
        if image is None:  # resolve_mode refuses such queries first
            raise QueryError(f"mode {mode.value} needs a query image ({{image}})")
        if mode.query is QueryKind.IMAGE:
            return self.encoder.encode_image([image])[0]
        return self.encoder.encode_fused([image], [query.query_str])[0]

    def resolve_blend(self, query: QueryBundle) -> Blend | None:
        """The blend ``query`` is searched with; None when it is searched on its mode's vector alone.

        Its scores are on ``scale_of`` that blend (``connectors.milvus.blend``).
        """
        return self._blend_for(self.resolve_mode(query), query.query_str)

    def search(self, vector: np.ndarray, mode: Mode, text: str = "", k: int | None = None) -> list[NodeWithScore]:
        """The top-k (or ``k``) nodes for an already embedded query; ``text`` feeds BM25 when a blend has it."""
        results = []
        for hit, merged in self._search_hits(vector, mode, text, k or self.top_k):
            node = to_llama_node(hit.item)
            if merged:
                annotate(node, MERGED_DUPLICATES, merged)
            results.append(NodeWithScore(node=node, score=hit.score))
        return results

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        mode = self.resolve_mode(query_bundle)
        self._blend_for(mode, query_bundle.query_str)  # a blend the query cannot feed fails before the model runs
        if self.reranker is None:
            return self.search(self.embed(query_bundle, mode), mode, query_bundle.query_str)
        if not query_bundle.query_str.strip():
            raise QueryError("the cross-encoder reranker needs query text ({text}); this query has none")
        candidates = self.search(self.embed(query_bundle, mode), mode, query_bundle.query_str, self.rerank_candidates)
        return self.reranker.postprocess_nodes(candidates, query_bundle)[: self.top_k]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def _check_signals(self, signals: Sequence[str]) -> None:
        if "fused" in signals and not self.encoder.supports_fused:
            raise BlendError(
                f"encoder {self.encoder.name} has no joint image+text embedding, so collection "
                f"{self.store.collection!r} has no fused vectors (it stores the image vector in their place): "
                "blend image and bm25 instead"
            )
        self.store.check_signals(signals)

    def _blend_for(self, mode: Mode, text: str) -> Blend | None:
        if self.blend is not None:
            if "bm25" in self.blend.signals and not text.strip():
                raise BlendError(
                    f"the blend {self.blend.describe()} has bm25, which needs query text; this query has none"
                )
            return self.blend
        if self.hybrid:
            if text.strip():
                return Blend.hybrid(mode.field, self.hybrid_fusion)
            logger.info("hybrid search needs query text; this %s query is searched on dense vectors only", mode.value)
            return None
        return self.tuned.get(mode.query.value)

    def _search_hits(self, vector: np.ndarray, mode: Mode, text: str, k: int) -> list[tuple[Hit, list[str]]]:
        """The top ``k`` hits, each with the ids merged into it as its duplicates."""
        blend = self._blend_for(mode, text)
        check_threshold(self.score_threshold, scale_of(blend))
        filters = self._filters_for(mode)
        similar = self.dedup_threshold is not None
        compared = _compared_field(mode, blend)
        limit = min(2 * k + 8, MAX_TOP_K) if self.dedup or similar else k
        while True:
            if blend is None:
                hits = self.store.search(vector, field=mode.field, k=limit, filter=filters, with_vectors=similar)
            else:
                hits = self.store.hybrid_search(
                    vector,
                    text,
                    blend=blend,
                    k=limit,
                    filter=filters,
                    only_images=mode.target is Target.IMAGE,
                    with_vectors=similar,
                )
            above = [h for h in hits if self.score_threshold is None or h.score >= self.score_threshold]
            kept = _merge_duplicates(above, exact=self.dedup, field=compared, threshold=self.dedup_threshold)
            # No more to fetch: the store ran out, the threshold cut the list, or k is at its maximum.
            exhausted = len(hits) < limit or len(above) < len(hits) or limit == MAX_TOP_K
            if len(kept) >= k or exhausted:
                return kept[:k]
            limit = min(4 * limit, MAX_TOP_K)

    def _filters_for(self, mode: Mode) -> Filters | None:
        """The caller's filters and the mode's target condition, joined with AND.

        A ``modality`` entry of a dict narrows the mode's targets (``searched_modalities``), and is refused
        with a ``QueryError`` when the mode never returns what it asks for.
        """
        modalities = searched_modalities(mode, self.filters)
        if self.filters is None or isinstance(self.filters, MetadataFilters):
            target = mode.target_filter
            if target is None:
                return self.filters
            return MetadataFilters(filters=[target, *([self.filters] if self.filters is not None else [])])
        rest = {key: value for key, value in self.filters.items() if key != MODALITY}
        if len(modalities) == len(Modality):
            return rest
        return {**rest, MODALITY: [m.value for m in modalities]}


def _as_blend(blend: Blend | Mapping[str, float] | str, fusion: Fusion) -> Blend:
    if isinstance(blend, Blend):
        return blend
    return Blend.parse(blend, fusion) if isinstance(blend, str) else Blend.of(blend, fusion)


def _compared_field(mode: Mode, blend: Blend | None) -> Literal["fused", "image"]:
    """The vectors similarity merging compares: the mode's, or under a blend the fused ones unless it searches
    pictures alone."""
    if blend is None:
        return mode.field
    return "image" if "image" in blend.signals and "fused" not in blend.signals else "fused"


def _identity(item: KnowledgeItem) -> list[tuple[str, ...]]:
    """What makes two items the same: their id, or their image bytes (by digest; none for text-only items) and text.

    An item whose image digest is unknown is the same as no other.
    """
    keys: list[tuple[str, ...]] = [("id", item.id)]
    digest = item.image.sha256 if item.image is not None else ""
    if digest is not None:
        keys.append(("content", digest, item.text))
    return keys


def _merge_duplicates(
    hits: Sequence[Hit], *, exact: bool, field: Literal["fused", "image"], threshold: float | None
) -> list[tuple[Hit, list[str]]]:
    """The hits, best first, each with the ids of the later hits merged into it.

    ``exact``: merge true duplicates (see ``_identity``); ``threshold``: also merge a hit whose
    ``field`` vector has a cosine above it with a kept hit's.
    """
    kept: list[tuple[Hit, list[str]]] = []
    owners: dict[tuple[str, ...], int] = {}
    vectors: list[tuple[int, np.ndarray]] = []
    for hit in hits:
        keys = _identity(hit.item) if exact else []
        owner = next((owners[key] for key in keys if key in owners), None)
        vector = (hit.image_embedding if field == "image" else hit.embedding) if threshold is not None else None
        if owner is None and vector is not None:
            owner = next((index for index, other in vectors if float(vector @ other) > threshold), None)  # type: ignore[operator]
        if owner is not None:
            kept[owner][1].append(hit.id)
            continue
        owners.update({key: len(kept) for key in keys})
        if vector is not None:
            vectors.append((len(kept), vector))
        kept.append((hit, []))
    return kept
