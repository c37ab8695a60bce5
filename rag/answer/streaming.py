"""Answers as LlamaIndex streams: ``StreamingResponse`` subclasses whose tokens come from any LLM's ``stream_chat``.

Iterate ``response_gen`` (async: ``async_response_gen()``) for the tokens as the LLM writes them;
once it is exhausted, ``answer`` holds the finished ``AnswerResponse`` (status, citations and
their check), and ``get_response()`` drains the stream and returns it. When the LLM fails before
its first token, the stream is the ranked evidence with the error (status ``llm_error``), as
without streaming; when it fails later, the tokens so far stay the answer (status ``partial``).
The first token is awaited at most the LLM's time limit (``RAG_LLM_TIMEOUT``, the client's retries
included), and so is each next one (``rag.answer.pacing``); a silence mid-answer ends it as ``partial``.
Only a stream that ends with the provider's clean finish signal is ``answered``: one that just
stops (the connection dropped) or finishes for the output token limit is ``partial``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Sequence
from dataclasses import dataclass

from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.llms import LLM, ChatMessage, ChatResponse
from llama_index.core.schema import NodeWithScore

from .llm import Ending, LLMErrorKind, describe_error, endpoint_of, error_kind
from .pacing import apaced, paced
from .response import AnswerResponse, finished


@dataclass
class StreamingAnswerResponse(StreamingResponse):
    """A ``StreamingResponse`` that becomes an ``AnswerResponse`` (``answer``) when its tokens are consumed."""

    answer: AnswerResponse | None = None

    def get_response(self) -> AnswerResponse:
        """The finished answer, after consuming whatever tokens are left."""
        for _ in self.response_gen:
            pass
        return _finished(self.answer)

    def __str__(self) -> str:
        return self.get_response().response or ""


@dataclass
class AsyncStreamingAnswerResponse(AsyncStreamingResponse):
    """An ``AsyncStreamingResponse`` that becomes an ``AnswerResponse`` (``answer``) when its tokens are consumed."""

    answer: AnswerResponse | None = None

    async def get_response(self) -> AnswerResponse:
        async for _ in self.async_response_gen():
            pass
        return _finished(self.answer)


def _finished(answer: AnswerResponse | None) -> AnswerResponse:
    if answer is None:
        raise RuntimeError("the answer's stream was closed before its end")
    return answer


def stream(llm: LLM, messages: Sequence[ChatMessage], nodes: list[NodeWithScore]) -> StreamingAnswerResponse:
    """The LLM's answer as it is written (nothing is sent before the first token is asked for)."""
    response = StreamingAnswerResponse(response_gen=_nothing(), source_nodes=nodes)

    def tokens() -> Generator[str, None, None]:
        parts: list[str] = []
        ending = Ending()
        try:
            for chunk in paced(llm, lambda: iter(llm.stream_chat(messages))):
                ending.see(chunk.raw)
                if delta := _delta(chunk, parts):
                    parts.append(delta)
                    yield delta
            error, kind = ending.error(), LLMErrorKind.PARTIAL
        except Exception as e:  # every client library fails its own way; the tokens so far are kept
            error, kind = _stream_error(e, parts, llm), error_kind(e)
        response.answer = finished("".join(parts), nodes, error, kind)
        if not parts:
            yield response.answer.response or ""

    response.response_gen = tokens()
    return response


def astream(llm: LLM, messages: Sequence[ChatMessage], nodes: list[NodeWithScore]) -> AsyncStreamingAnswerResponse:
    """``stream`` for async callers, over the LLM's ``astream_chat``."""
    response = AsyncStreamingAnswerResponse(response_gen=_anothing(), source_nodes=nodes)

    async def tokens() -> AsyncGenerator[str, None]:
        parts: list[str] = []
        ending = Ending()
        try:
            async for chunk in apaced(llm, await llm.astream_chat(messages)):
                ending.see(chunk.raw)
                if delta := _delta(chunk, parts):
                    parts.append(delta)
                    yield delta
            error, kind = ending.error(), LLMErrorKind.PARTIAL
        except Exception as e:
            error, kind = _stream_error(e, parts, llm), error_kind(e)
        response.answer = finished("".join(parts), nodes, error, kind)
        if not parts:
            yield response.answer.response or ""

    response.response_gen = tokens()
    return response


def settled(answer: AnswerResponse) -> StreamingAnswerResponse:
    """An answer known at once (no evidence, no LLM) as a stream of one token."""

    def token() -> Generator[str, None, None]:
        yield answer.response or ""

    return StreamingAnswerResponse(response_gen=token(), source_nodes=answer.source_nodes, answer=answer)


def asettled(answer: AnswerResponse) -> AsyncStreamingAnswerResponse:
    async def token() -> AsyncGenerator[str, None]:
        yield answer.response or ""

    return AsyncStreamingAnswerResponse(response_gen=token(), source_nodes=answer.source_nodes, answer=answer)


def _nothing() -> Generator[str, None, None]:
    yield from ()


async def _anothing() -> AsyncGenerator[str, None]:
    return
    yield  # an async generator that yields nothing


def _delta(chunk: ChatResponse, parts: list[str]) -> str:
    """The chunk's new text; white space before the answer's first word is dropped."""
    delta = chunk.delta or ""
    return delta if parts else delta.lstrip()


def _stream_error(error: Exception, parts: list[str], llm: LLM) -> str:
    described = describe_error(error, endpoint_of(llm))
    return f"the LLM stopped mid-answer: {described}" if parts else described
