"""Answer synthesis that shows the LLM every retrieved item as its picture *and* its text, numbered for citation.

LlamaIndex's own multimodal synthesis turns an ``ImageNode`` into its image alone and drops the
caption; here each item becomes ``[n]`` + its text (with metadata) + its picture, followed by the
question (and the question's own picture, if any). The response lists which items the answer
cites and checks its markers (``rag.answer.citations``). Without an LLM, or when the LLM fails,
the response is the ranked evidence, labelled as such, so retrieval results are never lost.
With ``streaming=True`` the responses are LlamaIndex streams (``rag.answer.streaming``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.llms import LLM, ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.llms.mock import MockLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers import BaseSynthesizer
from llama_index.core.schema import NodeWithScore, QueryBundle, QueryType, TextNode

from .budget import DEFAULT_EVIDENCE_TOKENS, PictureCost, pictures_within, within_budget
from .citations import cited_markers
from .evidence import evidence_name, evidence_text, merge_pages
from .images import node_picture, sized_image_block
from .llm import LLMError, achat_reply, achat_text, chat_reply, chat_text
from .response import AnswerResponse, AnswerStatus, Citation, without_answer, written
from .streaming import AsyncStreamingAnswerResponse, StreamingAnswerResponse, asettled, astream, settled, stream

logger = logging.getLogger(__name__)

ANSWER_INSTRUCTIONS = (
    "Answer the question using only the numbered evidence items. Each item has a text and may have a picture. "
    "Cite the items you use by their numbers in square brackets, such as [1] or [2][3], right after the "
    "statement they support. If the evidence does not answer the question, say so."
)
__all__ = [
    "ANSWER_INSTRUCTIONS",
    "AnswerResponse",
    "AnswerStatus",
    "Citation",
    "MultimodalSynthesizer",
    "cited_markers",
]


class MultimodalSynthesizer(BaseSynthesizer):
    """Sends each retrieved item to a chat LLM as image + text blocks with a citation marker.

    Use it as the ``response_synthesizer`` of a ``RetrieverQueryEngine`` (see ``answer_engine``).
    ``llm=None`` makes responses that list the evidence instead of answering. Local images are
    sent inline, downscaled to ``max_image_side``; URLs are passed on for the endpoint to fetch. Pictures count in
    ``max_evidence_tokens`` by ``picture_cost`` (default: the rule of ``llm``'s provider, ``rag.answer.budget``).
    Responses are ``AnswerResponse`` objects; with ``streaming=True``, ``StreamingAnswerResponse`` (async:
    ``AsyncStreamingAnswerResponse``) objects whose tokens come from the LLM's ``stream_chat`` as it writes.
    """

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        max_image_side: int = 1024,
        max_evidence_tokens: int = DEFAULT_EVIDENCE_TOKENS,
        picture_cost: PictureCost | None = None,
        instructions: str = ANSWER_INSTRUCTIONS,
        **kwargs: Any,
    ) -> None:
        # BaseSynthesizer wants an LLM object; without a real one it is never called.
        super().__init__(llm=llm or MockLLM(), **kwargs)
        self.answer_llm = llm
        self.max_image_side = max_image_side
        self.max_evidence_tokens = max_evidence_tokens
        self.picture_cost = picture_cost or PictureCost.for_llm(llm)
        self.instructions = instructions

    def _get_prompts(self) -> PromptDictType:
        return {"instructions": PromptTemplate(self.instructions)}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        if "instructions" in prompts:
            self.instructions = prompts["instructions"].get_template()

    def messages(self, query: QueryBundle, nodes: Sequence[NodeWithScore]) -> list[ChatMessage]:
        """The chat the LLM receives: instructions, then the numbered items, the question's picture, the question.

        Each item is headed by its marker and its name (``report.docx#tracking-faults``), then the metadata a
        reader cites by and its text (``rag.answer.evidence``). Pictures and texts share ``max_evidence_tokens``
        (``rag.answer.budget``): the question's picture first, the items' pictures best ranked first while they
        fit (by ``picture_cost``), and the texts share what is left fairly. What does not fit is left out with a
        note, so a request never holds more evidence than the budget.
        """
        question = self._picture(query.image_path, "the question's picture") if query.image_path else None
        budget = self.max_evidence_tokens - (self._cost(question) or 0)
        pictures = [self._picture(picture, f"[{rank}]") for rank, picture in _pictures(nodes)]
        costs = [self._cost(picture) for picture in pictures]
        kept = pictures_within(costs, budget)
        spent = sum(cost for cost, keep in zip(costs, kept) if keep and cost)
        texts = within_budget([evidence_text(result) for result in nodes], max(0, budget - spent))
        blocks: list[Any] = [TextBlock(text="Evidence items:\n")]
        numbered = 0
        for rank, (result, picture, keep, text) in enumerate(zip(nodes, pictures, kept, texts), start=1):
            name = evidence_name(result)
            heading = f"[{rank}] {name}" if name else f"[{rank}]"
            if picture is None:
                note = "text"
            elif isinstance(picture, TextBlock):  # unreadable: no image number is used, so the later ones stay right
                note = "its picture could not be read"
            elif not keep:
                note = "its picture is left out: the evidence budget is spent"
            else:
                numbered += 1
                note = f"its picture is image #{numbered}"
            blocks.append(TextBlock(text=f"\n{heading} ({note})\n{text}\n"))
            if keep and isinstance(picture, _Sent):
                blocks.append(picture.block)
        if isinstance(question, _Sent):
            numbered += 1
            blocks.append(TextBlock(text=f"\nThe question is about this picture (image #{numbered}):\n"))
            blocks.append(question.block)
        elif question is not None:
            blocks.append(question)
        blocks.append(TextBlock(text=f"\nQuestion: {query.query_str}\n"))
        return [
            ChatMessage(role=MessageRole.SYSTEM, content=self.instructions),
            ChatMessage(role=MessageRole.USER, blocks=blocks),
        ]

    def synthesize(
        self,
        query: QueryType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> AnswerResponse | StreamingAnswerResponse:
        bundle, nodes = _inputs(query, nodes, additional_source_nodes)
        if not nodes or self.answer_llm is None:
            return settled(without_answer(nodes)) if self._streaming else without_answer(nodes)
        messages = self.messages(bundle, nodes)  # pictures are read now, while their files exist
        if self._streaming:
            return stream(self.answer_llm, messages, nodes)
        try:
            text, ending = chat_reply(self.answer_llm, messages)
            return written(text, nodes, ending)
        except LLMError as e:
            return without_answer(nodes, error=str(e), kind=e.kind)

    async def asynthesize(
        self,
        query: QueryType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> AnswerResponse | AsyncStreamingAnswerResponse:
        bundle, nodes = _inputs(query, nodes, additional_source_nodes)
        if not nodes or self.answer_llm is None:
            return asettled(without_answer(nodes)) if self._streaming else without_answer(nodes)
        messages = self.messages(bundle, nodes)
        if self._streaming:
            return astream(self.answer_llm, messages, nodes)
        try:
            text, ending = await achat_reply(self.answer_llm, messages)
            return written(text, nodes, ending)
        except LLMError as e:
            return without_answer(nodes, error=str(e), kind=e.kind)

    def get_response(self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any) -> str:
        """An answer from plain text chunks (numbered like items); raises ``LLMError`` on failure."""
        return chat_text(self._require_llm(), self._text_messages(query_str, text_chunks))

    async def aget_response(self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any) -> str:
        return await achat_text(self._require_llm(), self._text_messages(query_str, text_chunks))

    def _text_messages(self, query_str: str, text_chunks: Sequence[str]) -> list[ChatMessage]:
        nodes = [NodeWithScore(node=TextNode(text=chunk)) for chunk in text_chunks]
        return self.messages(QueryBundle(query_str), nodes)

    def _require_llm(self) -> LLM:
        if self.answer_llm is None:
            raise LLMError("no LLM is configured")
        return self.answer_llm

    def _picture(self, image: str | bytes | None, what: str) -> _Sent | TextBlock | None:
        """The picture as sent and its size, or a note when it cannot be read; None: there is no picture."""
        if image is None:
            return None
        try:
            block, size = sized_image_block(image, self.max_image_side, self.picture_cost.detail)
        except OSError as e:
            logger.warning("picture of %s not sent to the LLM: %s", what, e)
            return TextBlock(text=f"(the picture of {what} could not be read)\n")
        return _Sent(block, size)

    def _cost(self, picture: _Sent | TextBlock | None) -> int | None:
        return self.picture_cost.tokens(picture.size) if isinstance(picture, _Sent) else None


@dataclass
class _Sent:
    """A picture as it goes to the LLM, and its size (None: a URL the endpoint fetches)."""

    block: ImageBlock
    size: tuple[int, int] | None


def _pictures(nodes: Sequence[NodeWithScore]) -> list[tuple[int, str | bytes | None]]:
    return [(rank, node_picture(result.node)) for rank, result in enumerate(nodes, start=1)]


def _inputs(
    query: QueryType, nodes: list[NodeWithScore], additional: Sequence[NodeWithScore] | None
) -> tuple[QueryBundle, list[NodeWithScore]]:
    """The query as a bundle, and the evidence: each page item merged with its own chunks (``rag.answer.evidence``)."""
    bundle = QueryBundle(query) if isinstance(query, str) else query
    return bundle, merge_pages(list(nodes) + list(additional or []))
