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
from typing import Any

from llama_index.core.llms import LLM, ChatMessage, MessageRole, TextBlock
from llama_index.core.llms.mock import MockLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers import BaseSynthesizer
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, QueryType, TextNode

from connectors.milvus.schema import SOURCE
from rag.items import item_name

from .budget import DEFAULT_EVIDENCE_TOKENS, within_budget
from .citations import cited_markers
from .images import image_block, node_picture
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
    sent inline, downscaled to ``max_image_side``; URLs are passed on for the endpoint to fetch.
    Responses are ``AnswerResponse`` objects; with ``streaming=True``, ``StreamingAnswerResponse`` (async:
    ``AsyncStreamingAnswerResponse``) objects whose tokens come from the LLM's ``stream_chat`` as it writes.
    """

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        max_image_side: int = 1024,
        max_evidence_tokens: int = DEFAULT_EVIDENCE_TOKENS,
        instructions: str = ANSWER_INSTRUCTIONS,
        **kwargs: Any,
    ) -> None:
        # BaseSynthesizer wants an LLM object; without a real one it is never called.
        super().__init__(llm=llm or MockLLM(), **kwargs)
        self.answer_llm = llm
        self.max_image_side = max_image_side
        self.max_evidence_tokens = max_evidence_tokens
        self.instructions = instructions

    def _get_prompts(self) -> PromptDictType:
        return {"instructions": PromptTemplate(self.instructions)}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        if "instructions" in prompts:
            self.instructions = prompts["instructions"].get_template()

    def messages(self, query: QueryBundle, nodes: Sequence[NodeWithScore]) -> list[ChatMessage]:
        """The chat the LLM receives: instructions, then the numbered items, the question's picture, the question.

        Each item is headed by its marker and its name (``report.docx#tracking-faults``); the items' texts share
        ``max_evidence_tokens`` (``rag.answer.budget``), and pictures are sent beside them.
        """
        blocks: list[Any] = [TextBlock(text="Evidence items:\n")]
        pictures = 0
        contents = [result.node.get_content(metadata_mode=MetadataMode.LLM) for result in nodes]
        texts = within_budget(contents, self.max_evidence_tokens)
        for rank, (result, text) in enumerate(zip(nodes, texts), start=1):
            node = result.node
            name = item_name(str(node.metadata.get(SOURCE, "")), node.metadata)
            heading = f"[{rank}] {name}" if name else f"[{rank}]"
            picture = node_picture(node)
            sent = self._picture(picture, f"[{rank}]") if picture is not None else None
            if sent is None:
                blocks.append(TextBlock(text=f"\n{heading} (text)\n{text}\n"))
            elif isinstance(sent, TextBlock):  # unreadable: no image number is used, so the later ones stay right
                blocks.append(TextBlock(text=f"\n{heading} (its picture could not be read)\n{text}\n"))
            else:
                pictures += 1
                blocks.append(TextBlock(text=f"\n{heading} (its picture is image #{pictures})\n{text}\n"))
                blocks.append(sent)
        if query.image_path:
            pictures += 1
            blocks.append(TextBlock(text=f"\nThe question is about this picture (image #{pictures}):\n"))
            blocks.append(self._picture(query.image_path, "the question's picture"))
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

    def _picture(self, image: str | bytes, what: str) -> Any:
        try:
            return image_block(image, self.max_image_side)
        except OSError as e:
            logger.warning("picture of %s not sent to the LLM: %s", what, e)
            return TextBlock(text=f"(the picture of {what} could not be read)\n")


def _inputs(
    query: QueryType, nodes: list[NodeWithScore], additional: Sequence[NodeWithScore] | None
) -> tuple[QueryBundle, list[NodeWithScore]]:
    bundle = QueryBundle(query) if isinstance(query, str) else query
    return bundle, list(nodes) + list(additional or [])
