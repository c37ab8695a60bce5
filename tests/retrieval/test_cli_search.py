"""`rag search` and `rag ask` end to end (CliRunner, in process) on the known corpus with the tiny encoder."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from rag.cli import app
from tests.answer.llm_server import FakeLLMServer, Reply, user_parts
from tests.conftest import parity_dir

from .corpus import CAPTIONS, COLLECTION, LIGHTHOUSE, Corpus, build


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> Corpus:
    return build(tmp_path_factory.mktemp("cli"), tiny_base)


@pytest.fixture
def rag(corpus: Corpus, monkeypatch: pytest.MonkeyPatch):
    tiny = parity_dir("base")
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    env = {
        "RAG_WEIGHTS": str(tiny / "weights.pth"),
        "RAG_TEXT_MODEL": str(tiny / "text_model"),
        "RAG_VISION_CONFIG": str(tiny / "vision_config.json"),
        "RAG_MILVUS_URI": corpus.db,
        "RAG_COLLECTION": COLLECTION,
    }
    runner = CliRunner()

    def invoke(command: str, *args: str):
        # The tiny model puts distinct items within 0.995 cosine of each other: keep them all.
        return runner.invoke(app, [command, "--no-dedup", *args], env=env)

    return invoke


def test_search_composed_query_prints_the_exact_item_first(rag, corpus) -> None:
    result = rag("search", "--text", CAPTIONS[2], "--image", str(corpus.pictures[0]), "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "composed-to-multimodal" and data["hybrid"] is False
    first = data["results"][0]
    assert (first["rank"], first["source"], first["text"], first["image"]) == (1, "grid/0-2", CAPTIONS[2], str(corpus.pictures[0]))
    assert first["id"] == corpus.id("grid/0-2") and first["metadata"]["tags"] == ["grid"] and len(data["results"]) == 3

    table = rag("search", "-t", CAPTIONS[2], "-i", str(corpus.pictures[0]), "-k", "2")
    assert table.exit_code == 0 and "grid/0-2" in table.stdout and "composed-to-multimodal" in table.stdout


def test_search_image_mode_filters_and_hybrid(rag, corpus) -> None:
    image = rag("search", "--image", str(corpus.pictures[5]), "--mode", "image-to-image", "--json")
    assert json.loads(image.stdout)["results"][0]["source"] == "uncaptioned"

    filtered = rag(
        "search", "-t", "anything", "--filter", "tags=coast", "--filter", "tags=grid",
        "--filter", '{"source": {"nin": ["grid/0-0", "grid/0-1"]}}', "-k", "20", "--json",
    )
    sources = [r["source"] for r in json.loads(filtered.stdout)["results"]]
    assert sorted(sources) == sorted(["lighthouse"] + [f"grid/{i}-{j}" for i in range(3) for j in range(3)][2:])

    hostile = rag("search", "-t", "x", "--filter", 'source=" or 1==1 or "', "--json")
    assert hostile.exit_code == 0 and json.loads(hostile.stdout)["results"] == []

    hybrid = rag("search", "-t", "rocky cliff", "--hybrid", "--json")
    data = json.loads(hybrid.stdout)
    assert data["hybrid"] is True and data["results"][0]["text"] == LIGHTHOUSE


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give a query"),
        (("-t", "x", "--mode", "sideways"), "unknown mode"),
        (("-t", "x", "--mode", "image-to-image"), "needs a query image"),
        (("-t", "x", "--filter", "novalue"), "key=value"),
        (("-t", "x", "--filter", "{bad json"), "not valid JSON"),
        (("-t", "x", "--filter", '{"created_at": {"~": 1}}'), "unknown filter operator"),
        (("-i", "/no/such/picture.png"), "is not a file"),
        (("-t", "x", "-c", "missing"), "no collection 'missing'"),
    ],
)
def test_search_errors_are_clear(rag, args, message) -> None:
    result = rag("search", *args)
    assert result.exit_code == 2 and message in " ".join(result.stderr.split())


def test_ask_without_llm_prints_the_labelled_evidence(rag, corpus) -> None:
    result = rag("ask", "Where is the lighthouse?", "--image", str(corpus.pictures[3]), "-k", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("No LLM is configured") and "[1] lighthouse: " + LIGHTHOUSE in result.stdout


def test_ask_with_an_llm_prints_the_answer_and_citations(rag, corpus) -> None:
    with FakeLLMServer(Reply("On a rocky cliff [1].")) as server:
        result = rag(
            "ask", "Where is the lighthouse?", "--image", str(corpus.pictures[3]), "-k", "2",
            "--llm-base-url", server.url, "--llm-model", "vision-test", "--max-image-side", "32",
        )
        as_json = rag("ask", "Where is the lighthouse?", "-k", "2", "--llm-base-url", server.url, "--llm-model", "m", "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("On a rocky cliff [1].")
    assert f"[1] lighthouse  id={corpus.id('lighthouse')}  image={corpus.pictures[3]}" in result.stdout
    text, images = user_parts(server.requests[0])
    assert len(images) == 3 and LIGHTHOUSE in text and "Where is the lighthouse?" in text
    data = json.loads(as_json.stdout)
    assert data["status"] == "answered" and data["citations"][0]["cited"] is True


def test_ask_when_the_llm_fails_exits_1_with_the_evidence(rag, corpus, monkeypatch) -> None:
    with FakeLLMServer(Reply(status=503)) as server:
        monkeypatch.setenv("RAG_LLM_MAX_RETRIES", "0")
        result = rag("ask", "Where is the lighthouse?", "-k", "2", "--llm-base-url", server.url, "--llm-model", "m", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "llm_error" and "HTTP 503" in data["error"] and len(data["citations"]) == 2
