"""Streamed answers (LlamaIndex's StreamingResponse protocol) from the fake endpoint's SSE and JSON-line chunks:
tokens arrive while the LLM is still writing, the finished answer is checked, and a stream that breaks off
keeps what was said."""

from __future__ import annotations

import asyncio

from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse

from rag.answer import AnswerStatus, answer_engine, ollama_llm
from rag.retrieval import MultimodalRetriever
from tests.helpers.llm import FakeLLMServer, Reply, user_parts

from .conftest import llm, query

ANSWER = "The bridge is in [2]. It is lit at night [2][3]. A lamp stands near it."


def test_tokens_arrive_before_the_llm_has_finished(retriever, corpus) -> None:
    reply = Reply(ANSWER, hold_after=2)  # two chunks, then the endpoint waits for the test's release
    with FakeLLMServer(reply) as server:
        response = answer_engine(retriever, llm(server), streaming=True).query(query(corpus))
        assert isinstance(response, StreamingResponse) and response.answer is None
        tokens = []
        for token in response.response_gen:
            tokens.append(token)
            if len(tokens) == 2:
                assert server.requests and response.answer is None  # the endpoint still holds the rest
                reply.release.set()
    assert reply.released is True  # released by the test after its second token, not by the time limit
    assert tokens[:3] == ["The ", "bridge ", "is "] and "".join(tokens) == ANSWER
    answer = response.get_response()
    assert answer.status is AnswerStatus.ANSWERED and answer.response == ANSWER and str(response) == ANSWER
    assert [c.rank for c in answer.cited] == [2, 3] and len(answer.citations) == 3
    assert answer.citation_check.uncited_sentences == ["A lamp stands near it."]
    assert answer.citation_check.unknown_citations == [] and not answer.citation_check.uncited
    assert server.requests[0]["body"]["stream"] is True
    text, images = user_parts(server.requests[0])
    assert len(images) == 4 and "(its picture is image #3)" in text  # the same request as without streaming


def test_streaming_and_plain_answers_agree(retriever, corpus) -> None:
    with FakeLLMServer(Reply(ANSWER)) as server:
        plain = answer_engine(retriever, llm(server)).query(query(corpus))
        streamed = answer_engine(retriever, llm(server), streaming=True).query(query(corpus)).get_response()
    assert streamed.to_dict() == plain.to_dict()
    assert user_parts(server.requests[0]) == user_parts(server.requests[1])


def test_a_stream_that_breaks_off_keeps_the_partial_answer_and_the_evidence(retriever, corpus) -> None:
    with FakeLLMServer(Reply("The bridge is in [2] and [7] shows", break_after=5)) as server:
        response = answer_engine(retriever, llm(server), streaming=True).query(query(corpus))
        tokens = list(response.response_gen)
    answer = response.answer
    assert tokens == ["The ", "bridge ", "is ", "in ", "[2] "]
    assert answer.status is AnswerStatus.PARTIAL and answer.failed
    assert answer.response == "The bridge is in [2]"  # what was said stays, as said
    assert "stopped mid-answer" in answer.error and len(answer.citations) == 3
    assert [c.rank for c in answer.cited] == [2]
    assert answer.to_dict()["status"] == "partial" and answer.to_dict()["error"] == answer.error


def test_a_failure_before_the_first_token_streams_the_evidence(retriever, corpus) -> None:
    with FakeLLMServer(Reply(status=500)) as server:
        response = answer_engine(retriever, llm(server), streaming=True).query(query(corpus))
        [listing] = list(response.response_gen)
    assert response.answer.status is AnswerStatus.LLM_ERROR and "HTTP 500" in response.answer.error
    assert listing == response.answer.response and listing.startswith("The LLM failed:")
    assert response.answer.citation_check is None and len(response.answer.citations) == 3


def test_without_llm_or_evidence_the_stream_is_one_token(retriever, store, tiny_base, corpus) -> None:
    response = answer_engine(retriever, streaming=True).query(query(corpus))
    [listing] = list(response.response_gen)
    assert response.answer.status is AnswerStatus.NO_LLM and listing.startswith("No LLM is configured")
    empty = MultimodalRetriever(store, tiny_base, filters={"source": "nowhere"})
    with FakeLLMServer() as server:
        nothing = answer_engine(empty, llm(server), streaming=True).query("anything")
        assert nothing.get_response().status is AnswerStatus.NO_EVIDENCE and server.requests == []


def test_async_streaming(retriever, corpus) -> None:
    reply = Reply(ANSWER, hold_after=1)

    async def run(server: FakeLLMServer) -> tuple[list[str], object]:
        response = await answer_engine(retriever, llm(server), streaming=True).aquery(query(corpus))
        assert isinstance(response, AsyncStreamingResponse)
        tokens = []
        async for token in response.async_response_gen():
            tokens.append(token)
            reply.release.set()
        return tokens, await response.get_response()

    with FakeLLMServer(reply) as server:
        tokens, answer = asyncio.run(run(server))
    assert reply.released is True and "".join(tokens) == ANSWER
    assert answer.status is AnswerStatus.ANSWERED and [c.rank for c in answer.cited] == [2, 3]


def test_async_stream_that_breaks_off(retriever, corpus) -> None:
    async def run(server: FakeLLMServer):
        response = await answer_engine(retriever, llm(server), streaming=True).aquery(query(corpus))
        return await response.get_response()

    with FakeLLMServer(Reply("One two [1] three", break_after=3)) as server:
        answer = asyncio.run(run(server))
    assert answer.status is AnswerStatus.PARTIAL and answer.response == "One two [1]"


def test_ollama_streams_json_lines(retriever, corpus) -> None:
    reply = Reply("It is [1].", hold_after=1)
    with FakeLLMServer(reply) as server:
        response = answer_engine(
            retriever, ollama_llm("llava", base_url=server.root, timeout=30), streaming=True
        ).query(query(corpus))
        for _ in response.response_gen:
            reply.release.set()
    assert reply.released is True and server.requests[0]["path"] == "/api/chat"
    assert response.answer.response == "It is [1]." and response.answer.status is AnswerStatus.ANSWERED
