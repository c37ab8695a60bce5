"""Answer synthesis that shows the LLM every retrieved item as its picture *and* its text, numbered for citation.

LlamaIndex's own multimodal synthesis turns an ``ImageNode`` into its image alone and drops the
caption; here each item becomes ``[n]`` + its text (with metadata) + its picture, followed by the
question (and the question's own picture, if any). The response lists which items the answer
cites. Without an LLM, or when the LLM fails, the response is the ranked evidence, labelled as
such, so retrieval results are never lost.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

from llama_index.core.base.response.schema import Response
from llama_index.core.llms import LLM, ChatMessage, MessageRole, TextBlock
from llama_index.core.llms.mock import MockLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers import BaseSynthesizer
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, QueryType, TextNode

from rag.display import snippet
from rag.retrieval.evidence import Evidence, merged_count

from .images import image_block, node_picture
from .llm import LLMError, achat_text, chat_text

logger = logging.getLogger(__name__)

ANSWER_INSTRUCTIONS = (
    "Answer the question using only the numbered evidence items. Each item has a text and may have a picture. "
    "Cite the items you use by their numbers in square brackets, such as [1] or [2][3], right after the "
    "statement they support. If the evidence does not answer the question, say so."
)
RERANK_REASON = "rerank_reason"
RERANK_ERROR = "rerank_error"
_MARKERS = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


class AnswerStatus(str, Enum):
    ANSWERED = "answered"
    NO_LLM = "no_llm"  # no LLM configured: the response is the ranked evidence
    LLM_ERROR = "llm_error"  # the LLM failed: the response is the ranked evidence and the error
    NO_EVIDENCE = "no_evidence"  # nothing matched; the LLM is not asked


class Citation(Evidence):
    """An evidence item as the answer saw it: ``rank`` is its marker ``[n]``."""

    cited: bool = False
    rerank_reason: str | None = None


@dataclass
class AnswerResponse(Response):
    """A LlamaIndex ``Response`` that also says how it was made and which items it cites."""

    status: AnswerStatus = AnswerStatus.ANSWERED
    error: str | None = None
    citations: list[Citation] = field(default_factory=list)  # every item sent, in marker order
    rerank_error: str | None = None

    @property
    def cited(self) -> list[Citation]:
        """The items whose markers appear in the answer."""
        return [c for c in self.citations if c.cited]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "answer": self.response,
            "error": self.error,
            "rerank_error": self.rerank_error,
            "citations": [c.model_dump(mode="json") for c in self.citations],
            "merged": merged_count(self.citations),
        }


class MultimodalSynthesizer(BaseSynthesizer):
    """Sends each retrieved item to a chat LLM as image + text blocks with a citation marker.

    Use it as the ``response_synthesizer`` of a ``RetrieverQueryEngine`` (see ``answer_engine``).
    ``llm=None`` makes responses that list the evidence instead of answering. Local images are
    sent inline, downscaled to ``max_image_side``; URLs are passed on for the endpoint to fetch.
    Responses are ``AnswerResponse`` objects; streaming is not supported.
    """

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        max_image_side: int = 1024,
        instructions: str = ANSWER_INSTRUCTIONS,
        **kwargs: Any,
    ) -> None:
        # BaseSynthesizer wants an LLM object; without a real one it is never called.
        super().__init__(llm=llm or MockLLM(), **kwargs)
        self.answer_llm = llm
        self.max_image_side = max_image_side
        self.instructions = instructions

    def _get_prompts(self) -> PromptDictType:
        return {"instructions": PromptTemplate(self.instructions)}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        if "instructions" in prompts:
            self.instructions = prompts["instructions"].get_template()

    def messages(self, query: QueryBundle, nodes: Sequence[NodeWithScore]) -> list[ChatMessage]:
        """The chat the LLM receives: instructions, then the numbered items, the question's picture, the question."""
        blocks: list[Any] = [TextBlock(text="Evidence items:\n")]
        pictures = 0
        for rank, result in enumerate(nodes, start=1):
            node = result.node
            text = node.get_content(metadata_mode=MetadataMode.LLM)
            picture = node_picture(node)
            if picture is not None:
                pictures += 1
                blocks.append(TextBlock(text=f"\n[{rank}] (its picture is image #{pictures})\n{text}\n"))
                blocks.append(self._picture(picture, f"[{rank}]"))
            else:
                blocks.append(TextBlock(text=f"\n[{rank}]\n{text}\n"))
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
    ) -> AnswerResponse:
        bundle, nodes = _inputs(query, nodes, additional_source_nodes)
        if not nodes or self.answer_llm is None:
            return _without_answer(nodes)
        try:
            text = chat_text(self.answer_llm, self.messages(bundle, nodes))
        except LLMError as e:
            return _without_answer(nodes, error=str(e))
        return _answered(text, nodes)

    async def asynthesize(
        self,
        query: QueryType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> AnswerResponse:
        bundle, nodes = _inputs(query, nodes, additional_source_nodes)
        if not nodes or self.answer_llm is None:
            return _without_answer(nodes)
        try:
            text = await achat_text(self.answer_llm, self.messages(bundle, nodes))
        except LLMError as e:
            return _without_answer(nodes, error=str(e))
        return _answered(text, nodes)

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


def _citations(nodes: Sequence[NodeWithScore], cited: set[int]) -> list[Citation]:
    return [
        Citation(
            **Evidence.from_node(rank, result).model_dump(),
            cited=rank in cited,
            rerank_reason=result.node.metadata.get(RERANK_REASON),
        )
        for rank, result in enumerate(nodes, start=1)
    ]


def _rerank_error(nodes: Sequence[NodeWithScore]) -> str | None:
    return next((n.node.metadata[RERANK_ERROR] for n in nodes if RERANK_ERROR in n.node.metadata), None)


def cited_markers(answer: str, count: int) -> set[int]:
    """The markers ``[n]`` (also ``[1, 2]``) in ``answer`` that name one of ``count`` items."""
    numbers = {int(n) for group in _MARKERS.findall(answer) for n in re.split(r"[,;]", group)}
    return {n for n in numbers if 1 <= n <= count}


def _answered(text: str, nodes: list[NodeWithScore]) -> AnswerResponse:
    return AnswerResponse(
        response=text,
        source_nodes=nodes,
        status=AnswerStatus.ANSWERED,
        citations=_citations(nodes, cited_markers(text, len(nodes))),
        rerank_error=_rerank_error(nodes),
    )


def _without_answer(nodes: list[NodeWithScore], error: str | None = None) -> AnswerResponse:
    """The ranked evidence as the response: no evidence, no LLM configured, or the LLM failed."""
    if not nodes:
        status, heading = AnswerStatus.NO_EVIDENCE, "No items in the collection match this query."
    elif error is None:
        status = AnswerStatus.NO_LLM
        heading = "No LLM is configured (set RAG_LLM_MODEL), so this is the retrieved evidence, best first:"
    else:
        status = AnswerStatus.LLM_ERROR
        heading = f"The LLM failed: {error.rstrip('.')}. This is the retrieved evidence, best first:"
    citations = _citations(nodes, set())
    lines = [heading] + [f"[{c.rank}] {c.name}: {snippet(c.text, 160, '(no text)')}" for c in citations]
    return AnswerResponse(
        response="\n".join(lines),
        source_nodes=nodes,
        status=status,
        error=error,
        citations=citations,
        rerank_error=_rerank_error(nodes),
    )

