"""RAG_LLM_TIMEOUT bounds the wait for the first token, the client's retries included, and each silence between two
tokens; a slow answer that keeps writing is never cut; nothing is retried once tokens were streamed."""

from __future__ import annotations

import asyncio

from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rag.answer import AnswerStatus, MultimodalSynthesizer, openai_compatible_llm
from tests.helpers.llm import FakeLLMServer, Reply

NODES = [NodeWithScore(node=TextNode(text="A bridge at night."), score=0.9)]
QUESTION = QueryBundle("Where is the bridge?")


def synthesizer(server: FakeLLMServer, timeout: float, retries: int, streaming: bool = True) -> MultimodalSynthesizer:
    llm = openai_compatible_llm("test", base_url=server.url, api_key="sk-test", timeout=timeout, max_retries=retries)
    return MultimodalSynthesizer(llm, streaming=streaming)


def test_the_first_token_limit_includes_the_clients_retries() -> None:
    # Each attempt would time out on its own after 1 s, and the client would retry twice: without the overall
    # limit the answer would wait three attempts (and their back-off). With it, it gives up after the first.
    replies = [Reply("late", delay=8) for _ in range(3)]
    with FakeLLMServer(*replies) as server:
        response = synthesizer(server, timeout=1, retries=2).synthesize(QUESTION, list(NODES))
        answer = response.get_response()
        attempts = len(server.requests)
    assert answer.status is AnswerStatus.LLM_ERROR
    assert "nothing within 1 s, retries included" in answer.error
    assert attempts < 3  # the caller stopped waiting before the client's last retry went out
    with FakeLLMServer(*[Reply("late", delay=8) for _ in range(3)]) as server:
        plain = synthesizer(server, timeout=1, retries=2, streaming=False).synthesize(QUESTION, list(NODES))
    assert plain.status is AnswerStatus.LLM_ERROR and "retries included" in plain.error


def test_a_silence_mid_answer_ends_it_as_partial_and_is_never_retried() -> None:
    reply = Reply("The bridge is lit at night [1].", hold_after=3)  # three words, then nothing until released
    with FakeLLMServer(reply, Reply("A second attempt [1].")) as server:
        answer = synthesizer(server, timeout=3, retries=3).synthesize(QUESTION, list(NODES)).get_response()
        reply.release.set()
        attempts = len(server.requests)
    assert answer.status is AnswerStatus.PARTIAL and answer.response == "The bridge is"
    assert "mid-answer" in answer.error
    assert attempts == 1  # the words streamed are kept; no second request replaces them


def test_a_slow_answer_that_keeps_writing_is_not_cut() -> None:
    words = "A long answer from a slow local LLM that keeps on writing [1].".split()
    with FakeLLMServer(Reply(" ".join(words), pace=0.4)) as server:  # ~4.4 s in all, each word within 0.4 s
        answer = synthesizer(server, timeout=3, retries=0).synthesize(QUESTION, list(NODES)).get_response()
    assert answer.status is AnswerStatus.ANSWERED and answer.response == " ".join(words)


def test_async_streams_keep_the_same_limits() -> None:
    async def run(server: FakeLLMServer):
        response = await synthesizer(server, timeout=3, retries=2).asynthesize(QUESTION, list(NODES))
        return await response.get_response()

    reply = Reply("The bridge is lit [1].", hold_after=2)
    with FakeLLMServer(reply) as server:
        answer = asyncio.run(run(server))
        reply.release.set()
        attempts = len(server.requests)
    assert answer.status is AnswerStatus.PARTIAL and answer.response == "The bridge" and attempts == 1
