"""The answer stage against a local OpenAI-compatible (and Ollama) endpoint: what the LLM is sent, citations,
rerank, and that the evidence survives every LLM failure."""

from __future__ import annotations

import asyncio
import base64
from io import BytesIO

import httpx
import pytest
from llama_index.core.schema import ImageNode, NodeWithScore
from PIL import Image

from rag.answer import (
    AnswerStatus,
    LLMError,
    MultimodalSynthesizer,
    answer_engine,
    llm_from_settings,
    ollama_llm,
    openai_compatible_llm,
)
from rag.answer.rerank import parse_ranking
from rag.answer.synthesizer import cited_markers
from rag.retrieval import MultimodalRetriever
from rag.settings import Settings
from tests.helpers.llm import FakeLLMServer, Reply, user_parts
from tests.retrieval.corpus import CAPTIONS, LIGHTHOUSE

from .conftest import QUESTION, llm, query


def decoded(data_url: str) -> Image.Image:
    header, payload = data_url.split(",", 1)
    assert header in ("data:image/jpeg;base64", "data:image/png;base64")
    return Image.open(BytesIO(base64.b64decode(payload)))


def test_each_item_goes_to_the_llm_as_picture_and_caption_with_its_marker(retriever, corpus) -> None:
    answer = "Picture [2] shows the bridge at night [2]; [1, 3] show the same place, [9] is not an item."
    with FakeLLMServer(Reply(answer)) as server:
        response = answer_engine(retriever, llm(server), max_image_side=64).query(query(corpus))
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "vision-test"
    assert request["body"]["messages"][0]["role"] == "system" and "[1]" in request["body"]["messages"][0]["content"]
    text, images = user_parts(request)
    assert len(images) == 4  # three items and the question's own picture
    assert all(max(decoded(url).size) == 64 for url in images)  # 224 px pictures, downscaled
    for rank, result in enumerate(response.source_nodes, start=1):
        assert f"[{rank}] {result.node.metadata['source']} (its picture is image #{rank})\n" in text
        assert result.node.get_content() in text  # the caption travels with the picture
    assert text.index("[1]") < text.index("[2]") < text.index("[3]") < text.index(f"Question: {QUESTION}")
    assert set(CAPTIONS) <= {n.node.get_content() for n in response.source_nodes}

    assert response.status is AnswerStatus.ANSWERED and str(response) == answer
    assert [c.rank for c in response.cited] == [1, 2, 3]
    for citation, result in zip(response.citations, response.source_nodes):
        assert (citation.id, citation.source) == (result.node.node_id, result.node.metadata["source"])
        assert citation.image == str(corpus.pictures[1]) and citation.mime_type == "image/png"
    assert response.to_dict()["citations"][0]["cited"] is True


def test_pictures_follow_their_item_in_the_request(store, tiny_base, corpus) -> None:
    pictures = MultimodalRetriever(store, tiny_base, mode="text-to-multimodal", top_k=3)
    with FakeLLMServer(Reply("[1]")) as server:
        answer_engine(pictures, llm(server)).query(query(corpus).query_str)
    content = [m for m in server.requests[0]["body"]["messages"] if m["role"] == "user"][0]["content"]
    kinds = [part["type"] for part in content]
    # "Evidence items:", then text + picture per item, then the question.
    assert kinds == ["text"] + ["text", "image_url"] * 3 + ["text"]
    assert decoded(content[2]["image_url"]["url"]).size == (224, 224)  # under the default 1024 px: not resized


def test_no_llm_configured_returns_the_ranked_evidence(retriever, corpus) -> None:
    response = answer_engine(retriever).query(query(corpus))
    assert response.status is AnswerStatus.NO_LLM and response.error is None
    assert str(response).startswith("No LLM is configured")
    assert [c.rank for c in response.citations] == [1, 2, 3] and not response.cited
    assert [f"[{c.rank}] {c.source}" in str(response) for c in response.citations] == [True] * 3
    assert len(response.source_nodes) == 3


@pytest.mark.parametrize(
    "reply, message",
    [
        (Reply(status=500), "HTTP 500"),
        (Reply(status=401), "HTTP 401"),
        (Reply(status=429), "HTTP 429"),
        (Reply(raw=b'{"choices": [{"message": '), "could not be read"),
        (Reply(raw=b"<html>gateway</html>"), "could not be read"),
        (Reply(raw=b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]}'), "no text"),
        (Reply(delay=3.0), "did not answer in time"),
    ],
    ids=["500", "401", "429", "truncated-json", "html", "empty", "timeout"],
)
def test_llm_failures_keep_the_evidence(retriever, corpus, reply, message) -> None:
    with FakeLLMServer(reply) as server:
        response = answer_engine(retriever, llm(server, timeout=0.5 if reply.delay else 30)).query(query(corpus))
    assert response.status is AnswerStatus.LLM_ERROR and message in response.error
    assert str(response).startswith("The LLM failed:") and message in str(response)
    assert len(response.citations) == 3 and len(response.source_nodes) == 3


def test_unreachable_endpoint_keeps_the_evidence(retriever, corpus) -> None:
    with FakeLLMServer() as server:
        url = server.url
    response = answer_engine(retriever, openai_compatible_llm("m", base_url=url, max_retries=0, timeout=2)).query(
        query(corpus)
    )
    assert response.status is AnswerStatus.LLM_ERROR and f"cannot reach the LLM endpoint {url}:" in response.error
    assert len(response.citations) == 3


def test_an_unreachable_default_endpoint_is_named_as_openai() -> None:
    import openai

    from rag.answer.llm import OPENAI_URL, describe_error, endpoint_of

    default = openai_compatible_llm("m")  # no base URL: OpenAI's API
    assert endpoint_of(default) == OPENAI_URL
    refused = openai.APIConnectionError(request=httpx.Request("POST", OPENAI_URL + "/chat/completions"))
    message = describe_error(refused, endpoint_of(default))
    assert message.startswith(
        f"cannot reach the LLM endpoint {OPENAI_URL} (OpenAI's API, the default: RAG_LLM_BASE_URL"
    )
    assert endpoint_of(ollama_llm("llava")) == "http://localhost:11434"


def test_rerank_reorders_with_reasons_kept(retriever, corpus) -> None:
    ranking = '```json\n{"ranking": [3, 1], "reasons": {"3": "shows the bridge", "1": "same place"}}\n```'
    with FakeLLMServer(Reply(ranking), Reply("The bridge is in [1].")) as server:
        retrieved = retriever.retrieve(query(corpus))
        response = answer_engine(retriever, llm(server), rerank_top_n=2).query(query(corpus))
    rerank_text, rerank_images = user_parts(server.requests[0])
    assert len(rerank_images) == 2  # the question's picture and the numbered grid
    grid = decoded(rerank_images[1])
    assert grid.size == (2 * 256, 2 * 256)  # three candidates in a 2x2 grid
    for rank, result in enumerate(retrieved, start=1):
        assert f"[{rank}] {result.node.get_content()}" in rerank_text
    answer_text, answer_images = user_parts(server.requests[1])
    assert len(answer_images) == 3 and "rerank_reason" not in answer_text  # two kept items + the question's
    ids = [r.node.node_id for r in retrieved]
    assert [c.id for c in response.citations] == [ids[2], ids[0]]
    assert [c.rerank_reason for c in response.citations] == ["shows the bridge", "same place"]
    assert [c.rank for c in response.cited] == [1] and response.rerank_error is None


def test_a_failed_rerank_keeps_the_retrieval_order_and_still_answers(retriever, corpus) -> None:
    with FakeLLMServer(Reply("I think the second one."), Reply("See [2].")) as server:
        retrieved = retriever.retrieve(query(corpus))
        response = answer_engine(retriever, llm(server), rerank_top_n=2).query(query(corpus))
    assert [c.id for c in response.citations] == [r.node.node_id for r in retrieved[:2]]
    assert "not the JSON asked for" in response.rerank_error
    assert response.status is AnswerStatus.ANSWERED and [c.rank for c in response.cited] == [2]


def test_ollama_gets_the_pictures_and_captions(retriever, corpus) -> None:
    with FakeLLMServer(Reply("It is [1].")) as server:
        response = answer_engine(retriever, ollama_llm("llava", base_url=server.root, timeout=30)).query(query(corpus))
    [request] = server.requests
    assert request["path"] == "/api/chat"
    [user] = [m for m in request["body"]["messages"] if m["role"] == "user"]
    assert len(user["images"]) == 4 and all(Image.open(BytesIO(base64.b64decode(i))) for i in user["images"])
    assert all(n.node.get_content() in user["content"] for n in response.source_nodes)
    assert QUESTION in user["content"] and response.status is AnswerStatus.ANSWERED


def test_remote_inline_and_missing_pictures(corpus) -> None:
    inline = base64.b64encode(corpus.pictures[0].read_bytes()).decode()
    nodes = [
        NodeWithScore(node=ImageNode(text="remote caption", image_url="https://example.invalid/a.jpg"), score=0.9),
        NodeWithScore(node=ImageNode(text="lost caption", image_path=str(corpus.root / "gone.png")), score=0.8),
        NodeWithScore(node=ImageNode(text="inline caption", image=inline), score=0.7),
    ]
    with FakeLLMServer(Reply("[1]")) as server:
        response = MultimodalSynthesizer(llm(server), max_image_side=100).synthesize("what is it?", nodes)
    text, images = user_parts(server.requests[0])
    assert images[0] == "https://example.invalid/a.jpg" and decoded(images[1]).size == (100, 100)
    assert "remote caption" in text and "lost caption" in text and "could not be read" in text
    assert "inline caption" in text
    assert response.status is AnswerStatus.ANSWERED


def test_async_query(retriever, corpus) -> None:
    with FakeLLMServer(Reply("Async [1].")) as server:
        response = asyncio.run(answer_engine(retriever, llm(server)).aquery(query(corpus)))
    assert response.status is AnswerStatus.ANSWERED and [c.rank for c in response.cited] == [1]


def test_nothing_retrieved_does_not_call_the_llm(store, tiny_base, corpus) -> None:
    empty = MultimodalRetriever(store, tiny_base, filters={"source": "nowhere"})
    with FakeLLMServer() as server:
        response = answer_engine(empty, llm(server)).query(LIGHTHOUSE)
    assert server.requests == [] and response.status is AnswerStatus.NO_EVIDENCE and response.citations == []


def test_get_response_answers_from_text_chunks() -> None:
    with FakeLLMServer(Reply("From [2].")) as server:
        assert MultimodalSynthesizer(llm(server)).get_response("q?", ["first", "second"]) == "From [2]."
    text, images = user_parts(server.requests[0])
    assert "[1] (text)\nfirst" in text and "[2] (text)\nsecond" in text and images == []
    with pytest.raises(LLMError, match="no LLM"):
        MultimodalSynthesizer().get_response("q?", ["first"])


def test_llm_from_settings(monkeypatch) -> None:
    assert llm_from_settings(Settings()) is None
    monkeypatch.setenv("RAG_LLM_MODEL", "qwen2.5-vl")
    monkeypatch.setenv("RAG_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RAG_LLM_API_KEY", "sk-env")
    chat = llm_from_settings()
    assert type(chat).__name__ == "OpenAILike"
    assert (chat.model, chat.api_base, chat.api_key, chat.is_chat_model) == (
        "qwen2.5-vl",
        "http://127.0.0.1:9/v1",
        "sk-env",
        True,
    )
    monkeypatch.setenv("RAG_LLM_PROVIDER", "ollama")
    monkeypatch.delenv("RAG_LLM_BASE_URL")
    ollama = llm_from_settings()
    assert type(ollama).__name__ == "Ollama" and ollama.base_url == "http://localhost:11434"


def test_missing_llm_package_says_what_to_install(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "llama_index.llms.openai_like", None)
    monkeypatch.setitem(sys.modules, "llama_index.llms.ollama", None)
    with pytest.raises(ImportError, match=r"pip install 'mmrag\[llm\]'"):
        openai_compatible_llm("m")
    with pytest.raises(ImportError, match="llama-index-llms-ollama"):
        ollama_llm("m")


def test_citation_markers() -> None:
    assert cited_markers("A [1], B [2][3], C [4, 5; 6], D [7] [x] [0] [12]", 7) == {1, 2, 3, 4, 5, 6, 7}
    assert cited_markers("no markers", 3) == set()


def test_parse_ranking() -> None:
    assert parse_ranking('{"ranking": [2, "3"], "reasons": {"2": "best"}}', 3) == ([2, 3, 1], {2: "best"})
    assert parse_ranking('Sure! {"ranking": [9, 2, 2, -1], "reasons": {"7": "x"}} Done.', 3) == ([2, 1, 3], {})
    for bad in ("no json", '{"order": [1]}', '{"ranking": "1,2"}', "{broken"):
        with pytest.raises(LLMError):
            parse_ranking(bad, 3)
