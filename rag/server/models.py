"""What the HTTP API answers: its response bodies, documented in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from connectors.milvus import ScoreScale, StoreStats
from connectors.milvus.blend import Fusion
from rag.answer import AnswerStatus, Citation, CitationCheck
from rag.retrieval import Evidence, Mode
from rag.retrieval.options import AnswerOptions, QueryOptions

MAX_TEXT = 8192


class SearchRequest(QueryOptions):
    """A search: a text (an image comes as a form's file), and how to search it."""

    text: str = Field(default="", max_length=MAX_TEXT, description="Query text (an instruction, for composed queries).")


class AskRequest(AnswerOptions):
    """A question (with an image, as a form's file), and how to search for and answer it."""

    text: str = Field(min_length=1, max_length=MAX_TEXT, description="The question.")


class ErrorBody(BaseModel):
    error: str = Field(description="A short code: bad_request, unauthorized, not_found, too_large, ...")
    message: str = Field(description="What went wrong, for people.")
    details: list[dict[str, Any]] | None = Field(default=None, description="Per-field problems of a 422.")


class Result(Evidence):
    image_url: str | None = Field(default=None, description="This server's URL of the item's image.")


class CitedResult(Citation):
    image_url: str | None = Field(default=None, description="This server's URL of the item's image.")


class BlendUsed(BaseModel):
    weights: dict[str, float] = Field(description="Each signal's share of the score (fused, image, bm25); they sum to 1.")
    fusion: Fusion
    tuned: bool = Field(description="True: the blend `rag eval --tune` saved for this kind of query.")


class Searched(BaseModel):
    mode: Mode
    blend: BlendUsed | None = Field(description="The signals searched together; null: the mode's vector alone.")
    score_scale: ScoreScale = Field(
        description="What scores mean. cosine: one vector, -1..1. weighted: Σ weight × normalised signal score, 0..1 "
        "(0.5 + arctan(cosine)/π per vector, 2·arctan(bm25)/π for BM25; a signal that did not find the item adds 0). "
        "rrf: Σ 1/(60 + rank), positions only (about 0.016 per signal at best)."
    )
    merged: int = Field(
        description="How many duplicates (the same item, or the same image bytes with the same text) were merged into "
        "the results; each result lists its own in `duplicates`."
    )


class SearchResponse(Searched):
    results: list[Result]


class AskResponse(Searched):
    status: AnswerStatus
    answer: str = Field(description="The answer with [n] citation markers; the ranked evidence when there is no LLM.")
    error: str | None = None
    rerank_error: str | None = None
    citations: list[CitedResult] = Field(description="Every item the answer saw; rank n is marker [n].")
    citation_check: CitationCheck | None = Field(
        default=None,
        description="The answer's markers checked against the items it saw (answered and partial answers only); "
        "the answer itself is never changed.",
    )


class TokenEvent(BaseModel):
    """The data of a `token` event of `/api/ask/stream`."""

    text: str = Field(description="The next piece of the answer, to append to what came before.")


class ServerStats(StoreStats):
    uri: str | None = Field(
        description="The Milvus URI; null unless the server shows its paths (RAG_SERVER_SHOW_PATHS)."
    )
    llm: str | None = Field(description="The LLM answering /api/ask; None: answers list the evidence.")
    encoder_runtime: dict[str, Any] = Field(
        description="Where this server's encoder runs: device, dtype, batch size, preprocessing workers, and why."
    )
    top_k: int = Field(description="How many items /api/search returns and /api/ask reads when top_k is not given.")
