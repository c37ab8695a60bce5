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

from .budget import PictureCost
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
    settings: Settings | None = None,
) -> RetrieverQueryEngine:
    """A ``RetrieverQueryEngine`` whose ``query`` returns an ``AnswerResponse`` (or streams one).

    ``llm``: any LlamaIndex chat LLM that accepts images (see ``rag.answer.llm``); None answers
    with the ranked evidence. ``options.llm_rerank`` (or ``rerank_top_n``, which wins): let the LLM rerank
    the retrieved candidates from a numbered grid picture and keep that many (retrieve more than you
    keep, e.g. top_k=10, 4). ``max_image_side``: the longer side of images sent to the LLM; default
    ``Settings().llm_max_image_side`` (``RAG_LLM_MAX_IMAGE_SIDE``). ``max_evidence_tokens``: the tokens of
    evidence sent with a question, pictures counted by the provider's rule (``RAG_LLM_IMAGE_DETAIL``,
    ``RAG_LLM_IMAGE_TOKENS``) and texts shared fairly (``rag.answer.budget``); default
    ``Settings().llm_max_evidence_tokens`` (``RAG_LLM_MAX_EVIDENCE_TOKENS``).
    ``settings``: where the defaults come from (default ``Settings()``).
    ``streaming``: ``query`` returns a ``StreamingAnswerResponse`` (``aquery``: ``AsyncStreamingAnswerResponse``).
    """
    settings = settings or Settings()
    max_image_side = max_image_side or settings.llm_max_image_side
    max_evidence_tokens = max_evidence_tokens or settings.llm_max_evidence_tokens
    picture_cost = PictureCost.for_llm(llm, settings.llm_image_tokens, settings.llm_image_detail)
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
            picture_cost=picture_cost,
            streaming=streaming,
            callback_manager=callback_manager,
        ),
        node_postprocessors=postprocessors,
        callback_manager=callback_manager,
    )
