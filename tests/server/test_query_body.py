"""The query options over HTTP: one model read from a JSON body or from form fields, and documented once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient

from rag.cli import app
from rag.cli.options import LLM_FLAGS, flag
from rag.retrieval.options import AnswerOptions, QueryOptions
from rag.settings import Settings
from tests.retrieval.corpus import CAPTIONS, NOTES, Corpus


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["source"] for r in response.json()["results"]]


def test_search_takes_a_json_body(client: TestClient) -> None:
    body = {"text": NOTES[1], "mode": "text-to-text", "top_k": 2, "filter": {"tags": "note"}, "dedup": False}
    response = client.post("/api/search", json=body)
    assert names(response)[0] == "notes/1" and len(names(response)) == 2 and response.json()["mode"] == "text-to-text"
    # The CLI's filter syntax is accepted in JSON too: one string, or a list of them.
    pairs = client.post("/api/search", json={"text": "anything", "filter": ["tags=coast"]})
    assert names(pairs) == ["lighthouse"]
    blended = client.post("/api/search", json={"text": "lighthouse keeper lamp", "blend": {"fused": 1, "bm25": 3}})
    assert blended.json()["blend"] == {"weights": {"fused": 0.25, "bm25": 0.75}, "fusion": "weighted", "tuned": False}


def test_ask_takes_a_json_body(client: TestClient) -> None:
    response = client.post("/api/ask", json={"text": CAPTIONS[0], "top_k": 2, "rerank": 1})
    body = response.json()
    assert response.status_code == 200 and body["status"] == "no_llm" and len(body["citations"]) == 2


def test_form_fields_and_an_upload_read_the_same_model(client: TestClient, corpus: Corpus) -> None:
    picture = {"image": ("q.png", corpus.pictures[2].read_bytes(), "image/png")}
    form = {"text": CAPTIONS[1], "top_k": "3", "filter": ["tags=grid", "tags=coast"], "dedup": "false", "blend": ""}
    response = client.post("/api/search", data=form, files=picture)
    assert names(response)[0] == "grid/2-1" and response.json()["mode"] == "composed-to-multimodal"
    json_twin = client.post("/api/search", json={**form, "top_k": 3, "dedup": False, "image": None})
    assert json_twin.status_code == 422  # a JSON body has no image: the field is unknown there


@pytest.mark.parametrize(
    "request_kwargs, status, says",
    [
        ({"json": {"text": "x", "top_k": 0}}, 422, "top_k: Input should be greater than or equal to 1"),
        ({"json": {"text": "x", "top_k": 101}}, 422, "top_k: Input should be less than or equal to 100"),
        ({"json": {"text": "x", "mode": "sideways"}}, 422, "mode must be one of text-to-any, text-to-multimodal"),
        ({"json": {"text": "x", "colour": "red"}}, 422, "colour: Extra inputs are not permitted"),
        ({"json": {"text": "x", "blend": "fused,bm25", "hybrid": True}}, 400, "give blend or hybrid, not both"),
        ({"json": {"text": "x", "hybrid": True, "min_score": 0.5}}, 400, "min_score: a minimum score means nothing"),
        ({"json": {"text": "x", "filter": "tags"}}, 400, "filter 'tags': write key=value pairs"),
        ({"data": {"text": "x", "fusion": "max"}}, 422, "fusion must be one of weighted, rrf, not 'max'"),
        ({"data": {"text": "x", "blend": "colour=1"}}, 400, "blend: unknown signal(s) 'colour'"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "not valid JSON"),
    ],
)
def test_refused_options_name_the_fields(
    client: TestClient, request_kwargs: dict[str, Any], status: int, says: str
) -> None:
    response = client.post("/api/search", **request_kwargs)
    assert response.status_code == status and says in response.json()["message"], response.json()
    assert "--" not in response.json()["message"]  # fields, not the CLI's flags


def test_one_declaration_reaches_the_cli_help_and_the_openapi_schema(client: TestClient) -> None:
    commands = {command.name: command for command in typer.main.get_command(app).commands.values()}
    for command, model in (("search", QueryOptions), ("ask", AnswerOptions)):
        flags = {param.name: param for param in commands[command].params}
        for field, info in model.model_fields.items():
            assert flags[field].help == info.description and flag(field, model) in flags[field].opts
    llm_flags = {param.name: param for param in commands["ask"].params}
    for field, spelled in LLM_FLAGS.items():
        assert llm_flags[field].help == f"{Settings.model_fields[field].description} [RAG_{field.upper()}]"
        assert llm_flags[field].opts == [spelled]
    schema = client.get("/openapi.json").json()
    for path, model in (("/api/search", "SearchRequest"), ("/api/ask", "AskRequest")):
        content = schema["paths"][path]["post"]["requestBody"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
        form = content["multipart/form-data"]["schema"]["allOf"]
        assert form[1]["properties"]["image"]["format"] == "binary"
    documented = schema["components"]["schemas"]["AskRequest"]["properties"]
    for field, info in AnswerOptions.model_fields.items():
        assert documented[info.alias or field]["description"] == info.description
    assert set(schema["components"]["schemas"]["SearchRequest"]["properties"]) == {
        *(info.alias or field for field, info in QueryOptions.model_fields.items()),
        "text",
    }


def test_without_rerankers_a_request_may_choose_none_and_nothing_else(client: TestClient) -> None:
    stats = client.get("/api/stats").json()
    assert stats["reranker"] == "none" and stats["rerankers"] == []
    off = client.post("/api/search", json={"text": "lamp", "top_k": 2, "reranker": "none"})
    assert off.status_code == 200 and [r["rerank_score"] for r in off.json()["results"]] == [None, None]
    refused = client.post("/api/search", json={"text": "lamp", "reranker": "/etc"})
    assert refused.status_code == 400
    assert "reranker: '/etc' is not one this server allows; choose one of: none " in refused.json()["message"]


@pytest.fixture(scope="module")
def reranking(settings: Settings, tiny_base, tmp_path_factory: pytest.TempPathFactory):
    """A server reranking with its own cross-encoder, and allowing a second one; the loads it makes."""
    from rag.retrieval import rerank
    from rag.server import create_app
    from tests.retrieval.tiny_reranker import build_reranker

    root = tmp_path_factory.mktemp("rerankers")
    own, other = build_reranker(root / "own"), build_reranker(root / "other", seed=1)
    allowed = {"reranker": str(own), "server_rerankers": [str(other)], "rerank_candidates": 8}
    loads: list[str] = []
    load = rerank.load_cross_encoder

    def recorded(name: str, runtime: Any) -> Any:
        loads.append(name)
        return load(name, runtime)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rerank, "load_cross_encoder", recorded)
        with TestClient(create_app(settings.model_copy(update=allowed), encoder=tiny_base)) as served:
            yield served, own, other, loads


def rerank_scores(response: Any) -> list[float | None]:
    assert response.status_code == 200, response.text
    key = "results" if "results" in response.json() else "citations"
    return [r["rerank_score"] for r in response.json()[key]]


def test_a_request_chooses_among_the_rerankers_the_operator_allowed(reranking) -> None:
    client, own, other, loads = reranking
    stats = client.get("/api/stats").json()
    assert stats["reranker"] == "own" and stats["rerankers"] == ["own", "other"]  # folders by name, not path
    default = rerank_scores(client.post("/api/search", json={"text": "lamp", "top_k": 3}))
    assert None not in default and default == sorted(default, reverse=True)
    named = rerank_scores(client.post("/api/search", json={"text": "lamp", "top_k": 3, "reranker": str(own)}))
    assert named == default  # the operator's own spelling names the same model
    second = rerank_scores(client.post("/api/search", json={"text": "lamp", "top_k": 3, "reranker": "other"}))
    assert None not in second and second != default
    off = client.post("/api/ask", json={"text": "lamp", "top_k": 3, "reranker": "none"})
    assert rerank_scores(off) == [None, None, None] and off.json()["status"] == "no_llm"
    form = client.post("/api/search", data={"text": "lamp", "top_k": "3", "reranker": "other"})
    assert rerank_scores(form) == second  # the page's form body reads the same field


@pytest.mark.parametrize("name", ["BAAI/bge-reranker-base", "/etc", "../own", "Other"])
def test_a_reranker_the_operator_did_not_allow_is_refused_and_never_loaded(reranking, name: str) -> None:
    client, _, _, loads = reranking
    refused = client.post("/api/ask", json={"text": "lamp", "reranker": name})
    assert refused.status_code == 400
    assert (
        f"reranker: {name!r} is not one this server allows; choose one of: none, own, other"
        in (refused.json()["message"])
    )
    assert name not in loads and all(Path(loaded).parent.name.startswith("rerankers") for loaded in loads)
