"""Only a clean finish is ``answered``: streams cut at random points (seeded), by a dropped connection or by a body
that just ends without the provider's finish signal, are ``partial`` with the words said so far, for both providers
(OpenAI-compatible server-sent events and Ollama JSON lines); ``finish_reason == "length"`` is ``partial`` too."""

from __future__ import annotations

import asyncio
import random

import pytest
from llama_index.core.llms import LLM
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rag.answer import AnswerStatus, MultimodalSynthesizer, ollama_llm, openai_compatible_llm
from rag.answer.llm import NO_FINISH, TOKEN_LIMIT, Ending
from tests.helpers.llm import FakeLLMServer, Reply

WORDS = "The bridge [1] is lit at night and a lamp stands near it, as [2] shows from the river bank".split()
NODES = [
    NodeWithScore(node=TextNode(text="A bridge at night."), score=0.9),
    NodeWithScore(node=TextNode(text="A lamp.")),
]


def provider_llm(provider: str, server: FakeLLMServer) -> LLM:
    if provider == "ollama":
        return ollama_llm("llava", base_url=server.root, timeout=30)
    return openai_compatible_llm("vision-test", base_url=server.url, api_key="sk-test", max_retries=0, timeout=30)


def streamed(provider: str, reply: Reply):
    with FakeLLMServer(reply) as server:
        synthesizer = MultimodalSynthesizer(provider_llm(provider, server), streaming=True)
        response = synthesizer.synthesize(QueryBundle("Where is the bridge?"), list(NODES))
        tokens = list(response.response_gen)
        return tokens, response.get_response()


@pytest.mark.parametrize("provider", ["openai", "ollama"])
@pytest.mark.parametrize("seed", range(4))
def test_a_stream_cut_at_a_random_point_is_partial(provider: str, seed: int) -> None:
    rng = random.Random(seed)
    cut = rng.randrange(1, len(WORDS))
    dropped = rng.random() < 0.5  # the connection dropped mid-body, or the body ended cleanly but unfinished
    reply = Reply(" ".join(WORDS), break_after=cut if dropped else None, end_after=None if dropped else cut)
    tokens, answer = streamed(provider, reply)
    said = " ".join(WORDS[:cut])
    assert "".join(tokens).strip() == said
    assert answer.status is AnswerStatus.PARTIAL and answer.failed, (seed, cut, dropped)
    assert answer.response == said and len(answer.citations) == 2
    if not dropped:
        assert answer.error == NO_FINISH
    assert answer.to_dict()["status"] == "partial" and answer.to_dict()["error"] == answer.error


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_a_whole_stream_with_its_finish_signal_is_answered(provider: str) -> None:
    tokens, answer = streamed(provider, Reply(" ".join(WORDS)))
    assert answer.status is AnswerStatus.ANSWERED and answer.error is None
    assert answer.response == " ".join(WORDS) == "".join(tokens)


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_a_stream_that_stops_at_the_token_limit_is_partial(provider: str) -> None:
    tokens, answer = streamed(provider, Reply(" ".join(WORDS[:6]), finish_reason="length"))
    assert "".join(tokens) == answer.response == " ".join(WORDS[:6])
    assert answer.status is AnswerStatus.PARTIAL and answer.error == TOKEN_LIMIT


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_a_whole_reply_at_the_token_limit_is_partial_without_streaming(provider: str) -> None:
    with FakeLLMServer(Reply("The bridge [1]", finish_reason="length"), Reply("The bridge [1].")) as server:
        synthesizer = MultimodalSynthesizer(provider_llm(provider, server))
        cut = synthesizer.synthesize(QueryBundle("Where?"), list(NODES))
        whole = synthesizer.synthesize(QueryBundle("Where?"), list(NODES))
    assert cut.status is AnswerStatus.PARTIAL and cut.error == TOKEN_LIMIT and cut.response == "The bridge [1]"
    assert whole.status is AnswerStatus.ANSWERED and whole.error is None


def test_an_async_stream_that_ends_without_its_finish_signal_is_partial() -> None:
    async def run(server: FakeLLMServer):
        synthesizer = MultimodalSynthesizer(provider_llm("openai", server), streaming=True)
        response = await synthesizer.asynthesize(QueryBundle("Where?"), list(NODES))
        return await response.get_response()

    with FakeLLMServer(Reply(" ".join(WORDS), end_after=3)) as server:
        answer = asyncio.run(run(server))
    assert answer.status is AnswerStatus.PARTIAL and answer.error == NO_FINISH
    assert answer.response == " ".join(WORDS[:3])


def test_an_llm_without_a_finish_signal_is_taken_at_its_word() -> None:
    assert Ending.of(None).error() is None  # a custom LlamaIndex LLM whose replies carry no raw provider data
    assert Ending.of({"done": False}).error() == NO_FINISH
    assert Ending.of({"done": True, "done_reason": "length"}).error() == TOKEN_LIMIT
    assert Ending.of({"choices": [{"finish_reason": "content_filter"}]}).error().endswith("'content_filter')")


def test_a_picture_that_fails_to_load_leaves_the_other_numbers_attached(tmp_path) -> None:
    from llama_index.core.schema import ImageNode
    from PIL import Image

    from tests.helpers.llm import user_parts

    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), "red").save(good)
    nodes = [
        NodeWithScore(node=ImageNode(text="A lost picture.", image_path=str(tmp_path / "gone.png"))),
        NodeWithScore(node=ImageNode(text="A red square.", image_path=str(good))),
    ]
    with FakeLLMServer(Reply("A red square [2].")) as server:
        answer = MultimodalSynthesizer(provider_llm("openai", server)).synthesize(QueryBundle("Which?"), nodes)
        text, images = user_parts(server.requests[0])
    assert answer.status is AnswerStatus.ANSWERED and len(images) == 1
    assert "[1] (its picture could not be read)" in text
    assert "[2] (its picture is image #1)" in text
