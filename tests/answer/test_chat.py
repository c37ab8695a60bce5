"""Conversations: follow-ups condensed with the history (checked by the query the retriever received), the earlier
turn's picture carried over when the follow-up is about it, streaming turns, and the history's token budget."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.core.schema import NodeWithScore, QueryBundle

from rag.answer import AnswerStatus, ollama_llm, openai_compatible_llm
from rag.answer.chat import (
    IMAGE_TOKENS,
    MultimodalChatEngine,
    estimated_tokens,
    history_tokenizer,
    parse_condensed,
    user_message,
)
from tests.helpers.llm import FakeLLMServer, Reply, message_parts, user_parts

from .conftest import llm


class Recording(BaseRetriever):
    """The retriever, keeping every query it receives."""

    def __init__(self, retriever: BaseRetriever) -> None:
        super().__init__()
        self.inner = retriever
        self.queries: list[QueryBundle] = []

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        self.queries.append(query_bundle)
        return self.inner.retrieve(query_bundle)


@pytest.fixture
def recording(retriever) -> Recording:
    return Recording(retriever)


def condense_request(server: FakeLLMServer, index: int) -> str:
    request = server.requests[index]
    assert "standalone question" in request["body"]["messages"][0]["content"]
    return user_parts(request)[0]


def test_a_follow_up_is_condensed_and_carries_the_earlier_picture(recording, corpus) -> None:
    script = [
        Reply("The carriage is white [1]."),
        Reply("Where is the white carriage at night?\nPICTURE: 1"),
        Reply("At night it stands by the bridge [2]."),
    ]
    picture = str(corpus.pictures[1])
    with FakeLLMServer(*script) as server:
        chat = MultimodalChatEngine(recording, llm(server))
        first = chat.chat("Show me the carriage", image_path=picture)
        second = chat.chat("And at night?")
    assert [(q.query_str, q.image_path) for q in recording.queries] == [
        ("Show me the carriage", picture),  # the first question needs no condensing: no LLM call for it
        ("Where is the white carriage at night?", picture),
    ]
    assert len(server.requests) == 3
    condensing = condense_request(server, 1)
    assert "User: Show me the carriage [attached picture 1]\nAssistant: The carriage is white [1]." in condensing
    assert condensing.endswith("Follow-up: And at night?")
    assert "Question: Where is the white carriage at night?" in user_parts(server.requests[2])[0]
    assert first.status is second.status is AnswerStatus.ANSWERED
    assert second.metadata["query"] == "Where is the white carriage at night?" and [c.rank for c in second.cited] == [2]
    history = chat.chat_history
    assert [m.role for m in history] == [MessageRole.USER, MessageRole.ASSISTANT] * 2
    assert history[2].content == "And at night?" and history[3].content == "At night it stands by the bridge [2]."


def test_a_follow_up_with_its_own_picture_keeps_it(recording, corpus) -> None:
    script = [Reply("It is red [1]."), Reply("Is this dress also red?\nPICTURE: 1"), Reply("Yes [1].")]
    with FakeLLMServer(*script) as server:
        chat = MultimodalChatEngine(recording, llm(server))
        chat.chat("What colour is the dress?", image_path=str(corpus.pictures[0]))
        chat.chat("And this one?", image_path=str(corpus.pictures[2]))
    assert recording.queries[1].image_path == str(corpus.pictures[2])
    assert "Follow-up (with a new picture attached): And this one?" in condense_request(server, 1)


def test_streamed_turns_arrive_incrementally_and_join_the_history(recording, corpus) -> None:
    reply = Reply("The whale swims [2].", hold_after=1)
    with FakeLLMServer(Reply("Which animal is in the ocean?"), reply) as server:
        chat = MultimodalChatEngine(recording, llm(server))
        history = [
            ChatMessage(role="user", content="Anything blue?"),
            ChatMessage(role="assistant", content="A whale."),
        ]
        stream = chat.stream_chat("Where is it?", chat_history=history)
        tokens = []
        for token in stream.response_gen:
            tokens.append(token)
            reply.release.set()
    assert reply.released is True and "".join(tokens) == "The whale swims [2]."
    assert recording.queries[0].query_str == "Which animal is in the ocean?"
    assert stream.answer.metadata["query"] == "Which animal is in the ocean?"
    assert [m.content for m in chat.chat_history] == [
        "Anything blue?",
        "A whale.",
        "Where is it?",
        "The whale swims [2].",
    ]


def test_async_chat(recording, corpus) -> None:
    async def run(server: FakeLLMServer):
        chat = MultimodalChatEngine(recording, llm(server))
        first = await chat.achat("Show me the bridge")
        stream = await chat.astream_chat("At night?")
        tokens = [token async for token in stream.async_response_gen()]
        return first, tokens, chat

    with FakeLLMServer(Reply("Here [1]."), Reply("The bridge at night"), Reply("Lit [3].")) as server:
        first, tokens, chat = asyncio.run(run(server))
    assert first.status is AnswerStatus.ANSWERED and "".join(tokens) == "Lit [3]."
    assert [q.query_str for q in recording.queries] == ["Show me the bridge", "The bridge at night"]
    assert len(chat.chat_history) == 4


def test_the_history_keeps_the_latest_turns_within_its_budget(recording, corpus) -> None:
    turns = []
    for n in range(6):
        turns.append(ChatMessage(role="user", content=f"question {n} " + "x" * 70))
        turns.append(ChatMessage(role="assistant", content=f"answer {n}"))
    with FakeLLMServer(Reply("Standalone"), Reply("[1]")) as server:
        chat = MultimodalChatEngine(recording, llm(server), history_tokens=60)
        chat.chat("And then?", chat_history=turns)
    condensing = condense_request(server, 0)
    kept = [n for n in range(6) if f"question {n} " in condensing]
    assert kept == [4, 5] and "answer 4" in condensing and "answer 5" in condensing  # 21 + 2 tokens a turn
    assert (
        sum(len(estimated_tokens(m.content)) for m in turns[-4:])
        <= 60
        < sum(len(estimated_tokens(m.content)) for m in turns[-6:])
    )


def test_a_picture_in_the_history_counts_a_fixed_amount(recording, corpus) -> None:
    turns = [
        user_message("first look", str(corpus.pictures[0])),
        ChatMessage(role="assistant", content="a dress"),
        user_message("second look", str(corpus.pictures[1])),
        ChatMessage(role="assistant", content="a bridge"),
    ]
    with FakeLLMServer(Reply("Standalone"), Reply("[1]")) as server:
        for budget in (IMAGE_TOKENS + 20, 2 * IMAGE_TOKENS + 20):
            MultimodalChatEngine(recording, llm(server), history_tokens=budget).chat("and?", chat_history=turns)
    tight, roomy = condense_request(server, 0), condense_request(server, 2)
    assert "first look" not in tight and "User: second look [attached picture 1]" in tight
    assert "User: first look [attached picture 1]" in roomy and "User: second look [attached picture 2]" in roomy


def test_without_an_llm_the_follow_up_is_searched_as_written(recording) -> None:
    chat = MultimodalChatEngine(recording)
    chat.chat("Show me the bridge")
    response = chat.chat("At night?")
    assert [q.query_str for q in recording.queries] == ["Show me the bridge", "At night?"]
    assert response.status is AnswerStatus.NO_LLM and chat.chat_history[1].content == "(no answer: no_llm)"


def test_a_failed_condensing_searches_the_follow_up_as_written(recording) -> None:
    with FakeLLMServer(Reply(status=500), Reply("Lit [1].")) as server:
        chat = MultimodalChatEngine(recording, llm(server))
        response = chat.chat("At night?", chat_history=[ChatMessage(role="user", content="the bridge")])
    assert recording.queries[0].query_str == "At night?" and response.status is AnswerStatus.ANSWERED


def test_the_history_is_counted_with_the_llms_tokenizer_where_llamaindex_knows_it() -> None:
    class Words:
        def encode(self, text: str) -> list[str]:
            return text.split()

    known = openai_compatible_llm("m", base_url="http://127.0.0.1:9/v1")
    known.tokenizer = Words()
    assert history_tokenizer(known)("three short words") == ["three", "short", "words"]
    assert history_tokenizer(openai_compatible_llm("m", base_url="http://127.0.0.1:9/v1")) is estimated_tokens
    assert history_tokenizer(ollama_llm("llava")) is estimated_tokens
    assert len(estimated_tokens("x" * 9)) == 3


def test_parse_condensed() -> None:
    assert parse_condensed('"Where is the carriage at night?"\nPICTURE: #2\n') == ("Where is the carriage at night?", 2)
    assert parse_condensed("Which bridge is it?") == ("Which bridge is it?", None)
    assert message_parts({"content": "plain"}) == ("plain", [])
