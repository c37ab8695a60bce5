"""The query engine: a retriever, an optional LLM rerank, and multimodal synthesis with citations."""

from __future__ import annotations

import logging

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import LLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine

from rag.retrieval.options import AnswerOptions
from rag.settings import Settings

from .rerank import GridReranker
from .synthesizer import MultimodalSynthesizer

logger = logging.getLogger(__name__)


def answer_engine(
    retriever: BaseRetriever,
    llm: LLM | None = None,
    options: AnswerOptions | None = None,
    *,
    max_image_side: int | None = None,
    max_evidence_tokens: int | None = None,
    rerank_top_n: int | None = None,
    streaming: bool = False,
    callback_manager: CallbackManager | None = None,
) -> RetrieverQueryEngine:
    """A ``RetrieverQueryEngine`` whose ``query`` returns an ``AnswerResponse`` (or streams one).

    ``llm``: any LlamaIndex chat LLM that accepts images (see ``rag.answer.llm``); None answers
    with the ranked evidence. ``options.llm_rerank`` (or ``rerank_top_n``, which wins): let the LLM rerank
    the retrieved candidates from a numbered grid picture and keep that many (retrieve more than you
    keep, e.g. top_k=10, 4). ``max_image_side``: the longer side of images sent to the LLM; default
    ``Settings().llm_max_image_side`` (``RAG_LLM_MAX_IMAGE_SIDE``). ``max_evidence_tokens``: the tokens of
    item text (and metadata) sent with a question, shared fairly (``rag.answer.budget``); default
    ``Settings().llm_max_evidence_tokens`` (``RAG_LLM_MAX_EVIDENCE_TOKENS``).
    ``streaming``: ``query`` returns a ``StreamingAnswerResponse`` (``aquery``: ``AsyncStreamingAnswerResponse``).
    """
    if max_image_side is None or max_evidence_tokens is None:
        settings = Settings()
        max_image_side = max_image_side or settings.llm_max_image_side
        max_evidence_tokens = max_evidence_tokens or settings.llm_max_evidence_tokens
    if rerank_top_n is None and options is not None:
        rerank_top_n = options.llm_rerank
    postprocessors: list[BaseNodePostprocessor] = []
    if rerank_top_n:
        if llm is None:
            logger.warning("rerank needs an LLM; the retrieval order is kept")
        else:
            postprocessors.append(GridReranker(llm=llm, top_n=rerank_top_n, max_image_side=max_image_side))
    return RetrieverQueryEngine(
        retriever,
        response_synthesizer=MultimodalSynthesizer(
            llm,
            max_image_side=max_image_side,
            max_evidence_tokens=max_evidence_tokens,
            streaming=streaming,
            callback_manager=callback_manager,
        ),
        node_postprocessors=postprocessors,
        callback_manager=callback_manager,
    )
