"""An LLM that fails: the reply keeps its shape (status, the evidence, the error), the failure is counted on
``/metrics`` by kind and logged at ERROR with the endpoint's address, which clients see only with the paths."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from llama_index.core.llms import ChatMessage, MessageRole
from prometheus_client.parser import text_string_to_metric_families

from rag.server import create_app
from rag.server.telemetry import HIDDEN
from rag.settings import Settings
from tests.helpers.llm import FakeLLMServer, Reply

FORM = {"text": "what hangs there?", "filter": '{"tags": "grid"}', "top_k": 2}


def _app(settings: Settings, llm: FakeLLMServer, **values: Any) -> Settings:
    update = {"llm_model": "vision-test", "llm_base_url": llm.url, "llm_max_retries": 0, "llm_timeout": 1.5, **values}
    return Settings(**{**settings.model_dump(), **update})


def _llm_errors(client: TestClient) -> dict[str, float]:
    families = text_string_to_metric_families(client.get("/metrics").text)
    return {s.labels["kind"]: s.value for f in families for s in f.samples if s.name == "rag_llm_errors_total"}


def _streamed(client: TestClient) -> tuple[list[str], dict[str, Any]]:
    """The tokens and the ``done`` event of ``/api/ask/stream``."""
    tokens, done = [], {}
    with client.stream("POST", "/api/ask/stream", data=FORM) as response:
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
                if name == "token":
                    tokens.append(data["text"])
                else:
                    done = data
    return tokens, done


def test_each_kind_of_failure_is_counted_logged_and_hidden_from_clients(
    settings: Settings, tiny_base, caplog: pytest.LogCaptureFixture
) -> None:
    answers = [
        Reply("A red dress [1]."),
        Reply(status=503),
        Reply(delay=30),
        Reply("A red [1]", finish_reason="length"),
    ]
    llm = FakeLLMServer(*answers).__enter__()
    with TestClient(create_app(_app(settings, llm), encoder=tiny_base)) as client:
        # the client library's first call imports much (seconds on a busy machine): done here, outside the limit
        client.app.state.service.llm.chat([ChatMessage(role=MessageRole.USER, content="warm up")])
        assert _llm_errors(client) == {}
        with caplog.at_level(logging.ERROR, logger="rag.server.telemetry"):
            replies = [client.post("/api/ask", data=FORM).json() for _ in range(3)]
            llm.__exit__()  # the endpoint goes away: nothing listens on its port
            replies.append(client.post("/api/ask", data=FORM).json())
            tokens, done = _streamed(client)
        counted = _llm_errors(client)
    assert counted == {"bad_status": 1, "timeout": 1, "partial": 1, "unreachable": 2}
    statuses = [reply["status"] for reply in [*replies, done]]
    assert statuses == ["llm_error", "llm_error", "partial", "llm_error", "llm_error"]
    for reply in [*replies, done]:  # the shape the page reads: the evidence, its citations, the error
        assert reply["error"] and len(reply["citations"]) == 2
        assert llm.root.split("//")[1] not in json.dumps(reply)
    assert replies[0]["answer"].startswith("The LLM failed: the LLM endpoint (its address is in the server log)")
    assert "HTTP 503" in replies[0]["error"] and HIDDEN in replies[3]["error"]
    assert replies[2]["answer"] == "A red [1]"  # the answer so far
    assert "".join(tokens) == done["answer"] and HIDDEN in done["answer"] and "[1] " in done["answer"]

    logged = [r for r in caplog.records if r.name == "rag.server.telemetry"]
    assert [r.levelname for r in logged] == ["ERROR"] * 5
    assert all(llm.url in r.getMessage() for r in logged)  # the log, the operator's, names the endpoint
    kinds = [r.getMessage().split("(")[1].split(")")[0] for r in logged]
    assert kinds == ["bad_status", "timeout", "partial", "unreachable", "unreachable"]


def test_the_endpoint_is_shown_with_the_paths(settings: Settings, tiny_base) -> None:
    with FakeLLMServer() as llm:
        pass  # stopped: unreachable
    with TestClient(create_app(_app(settings, llm, server_show_paths=True), encoder=tiny_base)) as client:
        reply = client.post("/api/ask", data=FORM).json()
    assert reply["status"] == "llm_error" and llm.url in reply["error"] and llm.url in reply["answer"]
