"""What the HTTP API answers: its response bodies, documented in the OpenAPI schema."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from connectors.milvus import ScoreScale, StoreStats
from connectors.milvus.blend import Fusion
from rag.answer import AnswerStatus, Citation, CitationCheck
from rag.retrieval import Evidence, Mode
from rag.retrieval.options import AnswerOptions, QueryOptions

MAX_TEXT = 8192
#: The most turns, and pictures, a client may send as a conversation's history (the token budget keeps fewer).
MAX_HISTORY_TURNS = 64
MAX_HISTORY_PICTURES = 8


class SearchRequest(QueryOptions):
    """A search: a text (an image comes as a form's file), and how to search it."""

    text: str = Field(default="", max_length=MAX_TEXT, description="Query text (an instruction, for composed queries).")


class HistoryTurn(BaseModel):
    """One earlier message of a conversation, as the client keeps it."""

    role: Literal["user", "assistant"]
    content: str = Field(max_length=4 * MAX_TEXT, description="What was asked, or answered.")
    image: str | None = Field(
        default=None,
        description="A user turn's picture, as a data URL (data:image/jpeg;base64,...); checked like a query image.",
    )


class AskRequest(AnswerOptions):
    """A question (with an image, as a form's file), and how to search for and answer it."""

    text: str = Field(min_length=1, max_length=MAX_TEXT, description="The question.")
    history: list[HistoryTurn] = Field(
        default_factory=list,
        max_length=MAX_HISTORY_TURNS,
        description="The conversation so far, oldest first: the server keeps none, so a client sends it with each "
        "follow-up. The follow-up is then condensed with it into a standalone question (`query` in the response), "
        "carrying an earlier turn's picture when it is about it. Bounded by RAG_CHAT_HISTORY_TOKENS, oldest turns "
        f"first; at most {MAX_HISTORY_PICTURES} pictures. A form sends it as one JSON array.",
    )

    conversation_id: str | None = Field(
        default=None,
        max_length=64,
        description="With RAG_SERVER_CONVERSATIONS: continue the conversation kept under this id (the response of "
        "its first question gives it); omit it to start one. Not with `history`.",
    )

    @field_validator("history", mode="before")
    @classmethod
    def _json_from_a_form(cls, value: object) -> object:
        """A form field holds the history as JSON text (one array, or one turn per repeated field)."""
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return value
        turns: list[object] = []
        for text in texts:
            parsed = json.loads(text)
            turns.extend(parsed if isinstance(parsed, list) else [parsed])
        return turns

    @field_validator("history")
    @classmethod
    def _few_pictures(cls, turns: list[HistoryTurn]) -> list[HistoryTurn]:
        if sum(1 for t in turns if t.image) > MAX_HISTORY_PICTURES:
            raise ValueError(f"the history holds more than {MAX_HISTORY_PICTURES} pictures; send the latest turns")
        return turns


class ErrorBody(BaseModel):
    error: str = Field(description="A short code: bad_request, unauthorized, not_found, too_large, ...")
    message: str = Field(description="What went wrong, for people.")
    details: list[dict[str, Any]] | None = Field(default=None, description="Per-field problems of a 422.")
    scope: str | None = Field(default=None, description="The token scope a 403 needed: read, write or admin.")
    store: str | None = Field(default=None, description="The store's state, in a 503 of /ready.")
    request_id: str | None = Field(
        default=None, description="The request's id, as in the X-Request-ID header and the server's log lines."
    )


class Result(Evidence):
    image_url: str | None = Field(default=None, description="This server's URL of the item's image.")


class CitedResult(Citation):
    image_url: str | None = Field(default=None, description="This server's URL of the item's image.")


class BlendUsed(BaseModel):
    weights: dict[str, float] = Field(
        description="Each signal's share of the score (fused, image, bm25); they sum to 1."
    )
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
    query: str | None = Field(
        default=None, description="The standalone question a follow-up (with `history`) was condensed into."
    )
    conversation_id: str | None = Field(
        default=None, description="With RAG_SERVER_CONVERSATIONS: the id to send with the next question."
    )
    citation_check: CitationCheck | None = Field(
        default=None,
        description="The answer's markers checked against the items it saw (answered and partial answers only); "
        "the answer itself is never changed.",
    )


class TokenEvent(BaseModel):
    """The data of a `token` event of `/api/ask/stream`."""

    text: str = Field(description="The next piece of the answer, to append to what came before.")


class ServerStats(StoreStats):
    uri: str | None = Field(  # type: ignore[assignment]  # the store's URI, hidden from clients unless allowed
        description="The Milvus URI; null unless the server shows its paths (RAG_SERVER_SHOW_PATHS)."
    )
    llm: str | None = Field(description="The LLM answering /api/ask; None: answers list the evidence.")
    encoder_runtime: dict[str, Any] = Field(
        description="Where this server's encoder runs: device, dtype, batch size, preprocessing workers, and why."
    )
    top_k: int = Field(description="How many items /api/search returns and /api/ask reads when top_k is not given.")
    reranker: str = Field(
        default="none", description="The cross-encoder a request gets when it names none (RAG_RERANKER), or none."
    )
    rerankers: list[str] = Field(
        default_factory=list,
        description="The cross-encoders a request's reranker may name (RAG_RERANKER, RAG_SERVER_RERANKERS), "
        "besides none.",
    )
    can_delete: bool = Field(
        default=False, description="Whether this client may delete items (DELETE /api/items): those who may ingest."
    )
    scope: str = Field(default="admin", description="What this client's token allows: read, write or admin.")
    can_upload: bool = Field(default=True, description="Whether this client may ingest (POST /api/ingest).")
    tenant: str | None = Field(default=None, description="The only tenant this client's token sees; none: all.")


class DeletedItems(BaseModel):
    deleted: int = Field(description="How many items the filter matched and were deleted.")
