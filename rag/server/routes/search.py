"""``/api/search`` and ``/api/ask``: a text, an image or both, answered with items or with an answer citing them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent
from llama_index.core.schema import QueryBundle

from connectors.milvus import Blend
from connectors.milvus.blend import scale_of
from rag.answer import AnswerResponse, StreamingAnswerResponse
from rag.retrieval import Evidence, Mode, MultimodalRetriever, merged_count
from rag.settings import Settings

from ..auth import AuditDep, PrincipalDep, owner
from ..conversations import Conversation
from ..models import AskRequest, AskResponse, BlendUsed, CitedResult, Result, SearchRequest, SearchResponse, TokenEvent
from ..service import Service
from .body import Query, openapi_body, query_body
from .deps import ServiceDep, SettingsDep, read_upload

router = APIRouter(tags=["search"])
SearchBody = Annotated[Query[SearchRequest], Depends(query_body(SearchRequest))]
AskBody = Annotated[Query[AskRequest], Depends(query_body(AskRequest))]


@router.post("/search", openapi_extra=openapi_body(SearchRequest))
def search(
    service: ServiceDep, settings: SettingsDep, body: SearchBody, who: PrincipalDep, audit: AuditDep
) -> SearchResponse:
    """Items for a text, an image, or both (a composed query), best first.

    The options come as a JSON body, or as form fields with the query image as the file ``image``."""
    request = body.options
    retriever = service.retriever(request, who.tenant)
    upload = read_upload(body.image, settings.server_max_upload_bytes) if body.image else None
    with service.query_image(upload) as path:
        used, blended, found = service.search(QueryBundle(request.text, image_path=path), retriever)
    audit.record("search", who, text=request.text, image=upload is not None, results=len(found))
    return SearchResponse(
        **_searched(used, blended, retriever, found),
        results=[Result(**_shown(e, settings).model_dump(), image_url=_image_url(e)) for e in found],
    )


@router.post("/ask", openapi_extra=openapi_body(AskRequest))
def ask(service: ServiceDep, settings: SettingsDep, body: AskBody, who: PrincipalDep, audit: AuditDep) -> AskResponse:
    """An answer citing the retrieved items; without an LLM (RAG_LLM_MODEL), the ranked evidence.

    The options come as a JSON body, or as form fields with the query image as the file ``image``."""
    request = body.options
    retriever = service.retriever(request, who.tenant)
    upload = read_upload(body.image, settings.server_max_upload_bytes) if body.image else None
    conversation = service.conversation(request, owner(who))
    with service.query_image(upload) as path, service.history(request.history) as history:
        used, blended, response = service.ask(
            QueryBundle(request.text, image_path=path), retriever, request, history=history, conversation=conversation
        )
    audit.record("ask", who, text=request.text, image=upload is not None, citations=len(response.citations))
    return _asked(service, used, blended, retriever, response, settings, conversation)


@dataclass
class _Streaming:
    """A question retrieved for, its answer's stream not started yet (errors so far are plain HTTP errors)."""

    service: Service
    mode: Mode
    blend: Blend | None
    retriever: MultimodalRetriever
    stream: StreamingAnswerResponse
    conversation: Conversation | None = None


def _streaming(
    service: ServiceDep, settings: SettingsDep, body: AskBody, who: PrincipalDep, audit: AuditDep
) -> _Streaming:
    request = body.options
    audit.record("ask", who, text=request.text, image=body.image is not None, stream=True)
    retriever = service.retriever(request, who.tenant)
    upload = read_upload(body.image, settings.server_max_upload_bytes) if body.image else None
    # The pictures are read into the LLM's requests (condensing, answering) before these files go.
    conversation = service.conversation(request, owner(who))
    with service.query_image(upload) as path, service.history(request.history) as history:
        used, blended, stream = service.ask(
            QueryBundle(request.text, image_path=path),
            retriever,
            request,
            streaming=True,
            history=history,
            conversation=conversation,
        )
    return _Streaming(service, used, blended, retriever, stream, conversation)


@router.post("/ask/stream", response_class=EventSourceResponse, openapi_extra=openapi_body(AskRequest))
def ask_stream(
    settings: SettingsDep, asked: Annotated[_Streaming, Depends(_streaming)]
) -> Iterator[TokenEvent | AskResponse]:  # the data of the events, as the OpenAPI schema documents them
    """The answer of `/api/ask` as server-sent events (`text/event-stream`), token by token as the LLM writes it.

    The request is `/api/ask`'s (a JSON body, or a form with the image; `history` or `conversation_id` for a
    follow-up). Errors before the answer starts (a bad field, a missing collection) are JSON errors as
    elsewhere. Then come events named `token`, whose data is `{"text": "..."}` (the next piece of the answer;
    without an LLM, or when it fails before its first word, one token holds the ranked evidence), and one last
    event named `done`, whose data is the `/api/ask` response: status, the whole answer, citations and their
    check. When the LLM fails mid-answer, `done` has status `partial`, the answer so far, the error and every
    item.
    """
    for token in asked.stream.response_gen:
        failed = asked.stream.answer  # set before the one token that is the evidence, when the LLM failed at once
        if failed is not None and failed.error:
            token = _without_endpoint(token, failed.error, asked.service.hide_llm)
        yield ServerSentEvent(event="token", data=TokenEvent(text=token))  # type: ignore[misc]
    response = asked.stream.get_response()
    done = _asked(asked.service, asked.mode, asked.blend, asked.retriever, response, settings, asked.conversation)
    yield ServerSentEvent(event="done", data=done)  # type: ignore[misc]


def _asked(
    service: Service,
    mode: Mode,
    blend: Blend | None,
    retriever: MultimodalRetriever,
    response: AnswerResponse,
    settings: Settings,
    conversation: Conversation | None = None,
) -> AskResponse:
    """The reply; an LLM's failure is counted and logged (ERROR), and its address shown only with the paths."""
    service.telemetry.llm_failed(response, service.llm_endpoint)
    hide = service.hide_llm
    answer, error = response.response or "", response.error
    return AskResponse(
        **_searched(mode, blend, retriever, response.citations),
        status=response.status,
        answer=_without_endpoint(answer, error, hide) if error else answer,
        error=hide(error) if error else None,
        rerank_error=hide(response.rerank_error) if response.rerank_error else None,
        citation_check=response.citation_check,
        query=(response.metadata or {}).get("query"),
        conversation_id=conversation.id if conversation is not None else None,
        citations=[
            CitedResult(**_shown(c, settings).model_dump(), image_url=_image_url(c)) for c in response.citations
        ],
    )


def _without_endpoint(text: str, error: str, hide: Callable[[str], str]) -> str:
    """``text`` with the LLM's ``error`` in it (the evidence's heading) as clients may see it."""
    said = error.rstrip(".")
    return text.replace(said, hide(said))


def _shown(item: Evidence, settings: Settings) -> Evidence:
    return item if settings.server_show_paths else item.without_paths()


def _searched(
    mode: Mode, blend: Blend | None, retriever: MultimodalRetriever, results: Sequence[Evidence]
) -> dict[str, Any]:
    """The fields every search response shares: how the query was searched, and how many duplicates were merged."""
    used = None
    if blend is not None:
        used = BlendUsed(**blend.to_dict(), tuned=retriever.blend is None and not retriever.hybrid)
    return {"mode": mode, "blend": used, "score_scale": scale_of(blend), "merged": merged_count(list(results))}


def _image_url(item: Evidence) -> str | None:
    return f"/api/items/{quote(item.id, safe='')}/image" if item.image else None
