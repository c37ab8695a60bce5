"""The cross-encoder reranker as a LlamaIndex ``BaseNodePostprocessor``: any query engine takes it in
``node_postprocessors=[...]``, and ``MultimodalRetriever`` runs it on its candidates when asked.

Each candidate is scored on its own text with the question. A bare picture (no text) is scored on
what it is shown with: its caption, else its name; nothing is dropped for lacking text. Every node
it returns carries ``rerank_score`` in its metadata (the raw logit, or its sigmoid with
``normalize``) and as its score, best first; the retrieval's own score stays in ``retrieval_score``.
"""

from __future__ import annotations

import functools

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle

from connectors.milvus.schema import SOURCE
from rag.embeddings.cross_encoder import CrossEncoder
from rag.embeddings.registry import runtime_from_settings, settings_with
from rag.items import item_name
from rag.runtime import Runtime
from rag.settings import Settings

from .evidence import RERANK_SCORE, RETRIEVAL_SCORE, annotate
from .modes import QueryError

#: A caption in a node's metadata (LlamaIndex users' nodes): what a bare picture is scored on.
CAPTION = "caption"


class CrossEncoderReranker(BaseNodePostprocessor):
    """Reorders candidates by a cross-encoder's score of (query, text) and keeps the best ``top_n``.

    ``model``: a local folder or a hub id (read from the Hugging Face cache when it is there, the hub
    only when it can be reached), e.g. ``BAAI/bge-reranker-base``; it runs on the encoder's device and
    dtype (``RAG_DEVICE``, ``RAG_DTYPE``) unless ``device``/``dtype`` say otherwise.
    """

    model: str = Field(description="A cross-encoder: a local folder or a hub id, e.g. BAAI/bge-reranker-base.")
    top_n: int = Field(default=5, ge=1, description="How many candidates to keep, best first.")
    normalize: bool = Field(default=False, description="Scores as the logit's sigmoid (0..1), not the raw logit.")
    device: str | None = Field(default=None, description="torch device; default: the encoder's (RAG_DEVICE).")
    dtype: str | None = Field(default=None, description="Weights dtype; default: the encoder's (RAG_DTYPE).")

    _encoder: CrossEncoder = PrivateAttr()

    def __init__(self, model: str, *, encoder: CrossEncoder | None = None, **kwargs: object) -> None:
        super().__init__(model=model, **kwargs)
        if encoder is None:
            settings = settings_with(Settings(), device=self.device, dtype=self.dtype)
            encoder = load_cross_encoder(model, runtime_from_settings(settings))
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "CrossEncoderReranker"

    @property
    def encoder(self) -> CrossEncoder:
        return self._encoder

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None or not query_bundle.query_str.strip():
            raise QueryError("the cross-encoder reranker scores text against the query's text, and this query has none")
        scores = self._encoder.score(
            query_bundle.query_str, [rerank_text(r.node) for r in nodes], normalize=self.normalize
        )
        for result, score in zip(nodes, scores):
            if RETRIEVAL_SCORE not in result.node.metadata:
                annotate(result.node, RETRIEVAL_SCORE, result.score)
            annotate(result.node, RERANK_SCORE, score)
            result.score = score
        return sorted(nodes, key=lambda r: r.score or 0.0, reverse=True)[: self.top_n]


def rerank_text(node: BaseNode) -> str:
    """What a candidate is scored on: its text; for a bare picture its caption, else its name."""
    text = node.get_content(metadata_mode=MetadataMode.NONE).strip()
    if text:
        return text
    caption = str(node.metadata.get(CAPTION) or "").strip()
    return caption or item_name(str(node.metadata.get(SOURCE, "")), node.metadata)


#: What a request names to switch reranking off (``--reranker none``, the API's ``"reranker": "none"``).
NO_RERANKER = frozenset({"none", "off"})


@functools.lru_cache(maxsize=2)
def load_cross_encoder(name: str, runtime: Runtime) -> CrossEncoder:
    """The cross-encoder ``name`` on ``runtime``, loaded once per process (a server reranks many queries)."""
    return CrossEncoder.from_pretrained(name, runtime=runtime)


def reranker_from_settings(
    settings: Settings | None = None,
    name: str | None = None,
    *,
    top_n: int | None = None,
    normalize: bool = False,
    runtime: Runtime | None = None,
) -> CrossEncoderReranker | None:
    """The reranker ``name`` (default ``RAG_RERANKER``) on the encoder's runtime; None when no model is named, or
    ``name`` is ``none`` (or ``off``): no reranking, whatever ``RAG_RERANKER`` says.

    Raises ``CheckpointError`` for a model that is not a one-label sequence classifier.
    """
    settings = settings or Settings()
    name = name or settings.reranker
    if not name or name.strip().lower() in NO_RERANKER:
        return None
    encoder = load_cross_encoder(name, runtime or runtime_from_settings(settings))
    return CrossEncoderReranker(name, encoder=encoder, top_n=top_n or settings.top_k, normalize=normalize)
