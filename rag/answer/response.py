"""What an answer is: its status, its text, the items it saw as citations, and the check of its markers.

Without an LLM, or when the LLM fails before answering, the response is the ranked evidence,
labelled as such, so retrieval results are never lost. When the LLM fails mid-answer, the
response keeps the partial answer (status ``partial``) and still lists every item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from llama_index.core.base.response.schema import Response
from llama_index.core.schema import NodeWithScore

from rag.display import snippet
from rag.retrieval.evidence import Evidence, merged_count

from .citations import CitationCheck, check_citations, cited_markers
from .llm import LLMErrorKind

RERANK_REASON = "rerank_reason"
RERANK_ERROR = "rerank_error"
NO_TEXT = "the LLM endpoint's reply has no text"


class AnswerStatus(str, Enum):
    ANSWERED = "answered"
    PARTIAL = "partial"  # the LLM failed mid-answer: the response is the answer so far, `error` says why
    NO_LLM = "no_llm"  # no LLM configured: the response is the ranked evidence
    LLM_ERROR = "llm_error"  # the LLM failed before answering: the response is the ranked evidence and the error
    NO_EVIDENCE = "no_evidence"  # nothing matched; the LLM is not asked


class Citation(Evidence):
    """An evidence item as the answer saw it: ``rank`` is its marker ``[n]``."""

    cited: bool = False
    rerank_reason: str | None = None


@dataclass
class AnswerResponse(Response):
    """A LlamaIndex ``Response`` that also says how it was made, which items it cites, and how its markers check out."""

    status: AnswerStatus = AnswerStatus.ANSWERED
    error: str | None = None
    citations: list[Citation] = field(default_factory=list)  # every item sent, in marker order
    rerank_error: str | None = None
    citation_check: CitationCheck | None = None  # for answers written by the LLM (answered, partial)
    error_kind: LLMErrorKind | None = None  # how the LLM failed (llm_error, partial), for counting

    @property
    def cited(self) -> list[Citation]:
        """The items whose markers appear in the answer."""
        return [c for c in self.citations if c.cited]

    @property
    def failed(self) -> bool:
        """The LLM failed, before or during its answer."""
        return self.status in (AnswerStatus.LLM_ERROR, AnswerStatus.PARTIAL)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "answer": self.response,
            "error": self.error,
            "rerank_error": self.rerank_error,
            "citations": [c.model_dump(mode="json") for c in self.citations],
            "citation_check": self.citation_check.model_dump(mode="json") if self.citation_check else None,
            "merged": merged_count(list[Evidence](self.citations)),
        }


def citations(nodes: Sequence[NodeWithScore], cited: set[int]) -> list[Citation]:
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


def written(text: str, nodes: list[NodeWithScore], error: str | None = None) -> AnswerResponse:
    """The LLM's answer (``partial`` when ``error`` ended it early), its citations checked; ``text`` is kept as is."""
    return AnswerResponse(
        response=text,
        source_nodes=nodes,
        status=AnswerStatus.PARTIAL if error else AnswerStatus.ANSWERED,
        error=error,
        error_kind=LLMErrorKind.PARTIAL if error else None,
        citations=citations(nodes, cited_markers(text, len(nodes))),
        rerank_error=_rerank_error(nodes),
        citation_check=check_citations(text, len(nodes)),
    )


def finished(
    text: str, nodes: list[NodeWithScore], error: str | None = None, kind: LLMErrorKind | None = None
) -> AnswerResponse:
    """The response once the LLM is done: its answer, the answer so far with the error, or the evidence (``kind``:
    how the LLM failed before its first word)."""
    if text.strip():
        return written(text.strip(), nodes, error)
    return without_answer(nodes, error=error or NO_TEXT, kind=kind if error else LLMErrorKind.UNREADABLE)


def without_answer(
    nodes: list[NodeWithScore], error: str | None = None, kind: LLMErrorKind | None = None
) -> AnswerResponse:
    """The ranked evidence as the response: no evidence, no LLM configured, or the LLM failed (``error``, and how:
    ``kind``)."""
    if not nodes:
        status, heading = AnswerStatus.NO_EVIDENCE, "No items in the collection match this query."
    elif error is None:
        status = AnswerStatus.NO_LLM
        heading = "No LLM is configured (set RAG_LLM_MODEL), so this is the retrieved evidence, best first:"
    else:
        status = AnswerStatus.LLM_ERROR
        heading = f"The LLM failed: {error.rstrip('.')}. This is the retrieved evidence, best first:"
    shown = citations(nodes, set())
    lines = [heading] + [f"[{c.rank}] {c.name}: {snippet(c.text, 160, '(no text)')}" for c in shown]
    return AnswerResponse(
        response="\n".join(lines),
        source_nodes=nodes,
        status=status,
        error=error,
        error_kind=(kind or LLMErrorKind.UNREADABLE) if status is AnswerStatus.LLM_ERROR else None,
        citations=shown,
        rerank_error=_rerank_error(nodes),
    )
