"""`POST /api/ask/stream`: server-sent events from uvicorn on loopback, token by token while the LLM still writes,
then one `done` event with the status, the citations and their check; errors before the stream are JSON."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rag.answer.llm import NO_FINISH, TOKEN_LIMIT
from rag.settings import Settings
from tests.helpers.llm import FakeLLMServer, Reply, user_parts
from tests.retrieval.corpus import CAPTIONS

from .conftest import serve_in_thread

ANSWER = "A red dress [1]. It hangs there [2]. Nothing else [5]."


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(settings: Settings, tiny_base, llm: FakeLLMServer) -> Iterator[str]:
    answering = Settings(**{**settings.model_dump(), "llm_model": "vision-test", "llm_base_url": llm.url})
    answering = answering.model_copy(update={"llm_max_retries": 0})
    with serve_in_thread(answering, tiny_base) as url:
        yield url


def events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """The (event, data) pairs of a server-sent event stream, as they arrive."""
    name, data = "message", []
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
        elif not line and data:
            yield name, json.loads("\n".join(data))
            name, data = "message", []


def ask(url: str, **form: Any):
    data = {"filter": '{"tags": "grid"}', "top_k": 3, **form}
    return httpx.stream("POST", f"{url}/api/ask/stream", data=data, timeout=60)


def test_tokens_arrive_while_the_llm_is_still_writing(server: str, llm: FakeLLMServer) -> None:
    reply = Reply(ANSWER, hold_after=2)
    llm.replies[:] = [reply]
    received: list[tuple[str, Any]] = []
    with ask(server, text="what hangs there?") as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for name, data in events(response):
            received.append((name, data))
            if len(received) == 2:
                reply.release.set()  # the endpoint has sent two chunks; the rest only now
    assert reply.released is True
    tokens = [data["text"] for name, data in received if name == "token"]
    assert tokens[:2] == ["A ", "red "] and "".join(tokens) == ANSWER
    [(name, done)] = received[len(tokens) :]
    assert name == "done" and done["status"] == "answered" and done["answer"] == ANSWER
    assert [c["cited"] for c in done["citations"]] == [True, True, False]
    assert done["citation_check"] == {"unknown_citations": [5], "uncited_sentences": [], "uncited": False}
    assert done["mode"] == "text-to-any" and all(c["image_url"] for c in done["citations"])


def test_a_failure_mid_answer_ends_with_a_partial_answer_and_the_evidence(server: str, llm: FakeLLMServer) -> None:
    llm.replies[:] = [Reply("A red dress [1] and", break_after=4)]
    with ask(server, text="what hangs there?") as response:
        received = list(events(response))
    assert [name for name, _ in received] == ["token"] * 4 + ["done"]
    done = received[-1][1]
    assert done["status"] == "partial" and done["answer"] == "A red dress [1]"
    assert "stopped mid-answer" in done["error"] and len(done["citations"]) == 3
    assert done["citation_check"]["uncited"] is False


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply("A red dress [1] and more", end_after=3), NO_FINISH),  # the body ends, but never says it finished
        (Reply("A red dress", finish_reason="length"), TOKEN_LIMIT),
    ],
)
def test_an_answer_without_a_clean_finish_is_partial(server: str, llm: FakeLLMServer, reply: Reply, error: str) -> None:
    llm.replies[:] = [reply]
    with ask(server, text="what hangs there?") as response:
        received = list(events(response))
    name, done = received[-1]
    assert name == "done" and done["status"] == "partial" and done["error"] == error
    assert done["answer"] == "A red dress" and len(done["citations"]) == 3


def test_a_failure_before_the_first_word_streams_the_evidence(server: str, llm: FakeLLMServer) -> None:
    llm.replies[:] = [Reply(status=500)]
    with ask(server, text="what hangs there?") as response:
        [(token, listing), (done, body)] = list(events(response))
    assert (token, done) == ("token", "done") and listing["text"].startswith("The LLM failed:")
    assert body["status"] == "llm_error" and "HTTP 500" in body["error"] and len(body["citations"]) == 3


def test_errors_before_the_stream_are_json(server: str) -> None:
    empty = httpx.post(f"{server}/api/ask/stream", data={"text": ""}, timeout=60)
    assert empty.status_code == 422 and empty.json()["error"] == "invalid_request"
    bad = httpx.post(f"{server}/api/ask/stream", data={"text": "x", "filter": "tags"}, timeout=60)
    assert bad.status_code == 400 and "key=value" in bad.json()["message"]


def test_without_an_llm_one_token_holds_the_evidence(client) -> None:
    with client.stream("POST", "/api/ask/stream", data={"text": CAPTIONS[0], "top_k": 2}) as response:
        [(token, listing), (done, body)] = list(events(response))
    assert listing["text"].startswith("No LLM is configured") and body["status"] == "no_llm"
    assert body["answer"] == listing["text"] and body["citation_check"] is None


def test_the_openapi_schema_documents_the_events(client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/ask/stream"]["post"]
    stream = operation["responses"]["200"]["content"]["text/event-stream"]["itemSchema"]
    refs = json.dumps(stream["properties"]["data"]["contentSchema"])
    assert "TokenEvent" in refs and "AskResponse" in refs
    assert "`token`" in operation["description"] and "`done`" in operation["description"]
    assert "multipart/form-data" in operation["requestBody"]["content"]


def data_url(path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_a_follow_up_is_condensed_with_the_history_the_client_sends(server: str, llm: FakeLLMServer, corpus) -> None:
    llm.replies[:] = [Reply("Where is the bridge at night?\nPICTURE: 1"), Reply("Lit up [1].")]
    history = [
        {"role": "user", "content": "Show me the bridge", "image": data_url(corpus.pictures[2])},
        {"role": "assistant", "content": "The bridge [2]."},
    ]
    body = {"text": "And at night?", "history": history, "top_k": 2}
    response = httpx.post(f"{server}/api/ask", json=body, timeout=60).json()
    assert response["status"] == "answered" and response["query"] == "Where is the bridge at night?"
    condensing, images = user_parts(llm.requests[-2])
    assert "User: Show me the bridge [attached picture 1]\nAssistant: The bridge [2]." in condensing and not images
    answering, pictures = user_parts(llm.requests[-1])
    assert "Question: Where is the bridge at night?" in answering
    assert "The question is about this picture" in answering and len(pictures) == 3  # two items and the history's


def test_a_streamed_follow_up_from_a_form(server: str, llm: FakeLLMServer) -> None:
    llm.replies[:] = [Reply("Which dress is red?"), Reply("The first [1].")]
    history = json.dumps([{"role": "user", "content": "a dress?"}, {"role": "assistant", "content": "Yes [1]."}])
    with ask(server, text="which is red?", history=history) as response:
        received = list(events(response))
    done = received[-1][1]
    assert done["status"] == "answered" and done["query"] == "Which dress is red?"
    assert "".join(data["text"] for name, data in received if name == "token") == "The first [1]."


@pytest.mark.parametrize(
    "history, status, message",
    [
        ([{"role": "user", "content": "x", "image": "not a data url"}], 400, "data URL"),
        ([{"role": "user", "content": "x", "image": "data:image/png;base64,@@@"}], 400, "base64"),
        ([{"role": "user", "content": "x", "image": "data:image/png;base64,AAAA"}], 400, "history picture"),
        ([{"role": "user", "content": "x", "image": "data:,"}] * 9, 422, "more than 8 pictures"),
        ([{"role": "robot", "content": "x"}], 422, "history"),
    ],
    ids=["not-a-data-url", "bad-base64", "not-an-image", "too-many-pictures", "bad-role"],
)
def test_bad_histories_are_refused(server: str, history, status: int, message: str) -> None:
    response = httpx.post(f"{server}/api/ask/stream", json={"text": "and?", "history": history}, timeout=60)
    assert response.status_code == status and message in response.text, response.text


def test_conversations_kept_by_the_server(settings: Settings, tiny_base, llm: FakeLLMServer, corpus) -> None:
    keeping = Settings(
        **{**settings.model_dump(), "llm_model": "vision-test", "llm_base_url": llm.url, "server_conversations": True}
    )
    llm.replies[:] = [Reply("The bridge [1]."), Reply("Where is the bridge at night?\nPICTURE: 1"), Reply("Lit [2].")]
    with serve_in_thread(keeping.model_copy(update={"llm_max_retries": 0}), tiny_base) as url:
        picture = {"image": ("q.png", corpus.pictures[2].read_bytes(), "image/png")}
        first = httpx.post(f"{url}/api/ask", data={"text": "Show me the bridge", "top_k": 2}, files=picture, timeout=60)
        conversation = first.json()["conversation_id"]
        body = {"text": "And at night?", "conversation_id": conversation, "top_k": 2}
        with httpx.stream("POST", f"{url}/api/ask/stream", json=body, timeout=60) as response:
            done = list(events(response))[-1][1]
        unknown = httpx.post(f"{url}/api/ask", json={"text": "x", "conversation_id": "nope"}, timeout=60)
    assert first.status_code == 200 and conversation
    assert done["query"] == "Where is the bridge at night?" and done["conversation_id"] == conversation
    condensing, _ = user_parts(llm.requests[-2])
    assert "User: Show me the bridge [attached picture 1]\nAssistant: The bridge [1]." in condensing
    assert len(user_parts(llm.requests[-1])[1]) == 3  # the kept copy of the first question's picture travels on
    assert unknown.status_code == 404 and "expired or never existed" in unknown.json()["message"]


def test_a_stateless_server_refuses_a_conversation_id(server: str) -> None:
    response = httpx.post(f"{server}/api/ask", json={"text": "x", "conversation_id": "abc"}, timeout=60)
    assert response.status_code == 400 and "keeps no conversations" in response.json()["message"]
