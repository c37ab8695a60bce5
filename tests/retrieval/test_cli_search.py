"""`rag search` and `rag ask` end to end (CliRunner, in process) on the known corpus with the tiny encoder."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from connectors.milvus import MilvusStore
from rag.cli import app
from tests.helpers.llm import FakeLLMServer, Reply, user_parts
from tests.helpers.models import use_tiny_model

from .corpus import CAPTIONS, COLLECTION, COPIES, LIGHTHOUSE, NOTES, Corpus, build, ingest_items


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> Corpus:
    return build(tmp_path_factory.mktemp("cli"), tiny_base)


@pytest.fixture(scope="module")
def plain(corpus: Corpus, tiny_base) -> str:
    """A collection without BM25."""
    ingest_items(corpus.db, "plain", tiny_base, [corpus.items["lighthouse"]], bm25=False)
    return "plain"


@pytest.fixture
def rag(corpus: Corpus, monkeypatch: pytest.MonkeyPatch):
    use_tiny_model(monkeypatch, RAG_MILVUS_URI=corpus.db, RAG_COLLECTION=COLLECTION)
    runner = CliRunner()

    def invoke(command: str, *args: str):
        # Every hit, the two copies of one item included; a test that counts merges adds --dedup.
        return runner.invoke(app, [command, "--no-dedup", *args])

    return invoke


def test_search_composed_query_prints_the_exact_item_first(rag, corpus) -> None:
    result = rag("search", "--text", CAPTIONS[2], "--image", str(corpus.pictures[0]), "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "composed-to-multimodal" and data["hybrid"] is False
    first = data["results"][0]
    assert (first["rank"], first["source"], first["text"], first["image"]) == (
        1,
        "grid/0-2",
        CAPTIONS[2],
        str(corpus.pictures[0]),
    )
    assert first["id"] == corpus.id("grid/0-2") and first["metadata"]["tags"] == ["grid"] and len(data["results"]) == 3

    table = rag("search", "-t", CAPTIONS[2], "-i", str(corpus.pictures[0]), "-k", "2")
    assert table.exit_code == 0 and "grid/0-2" in table.stdout and "composed-to-multimodal" in table.stdout


def test_search_image_mode_filters_and_hybrid(rag, corpus) -> None:
    image = rag("search", "--image", str(corpus.pictures[5]), "--mode", "image-to-image", "--json")
    assert json.loads(image.stdout)["results"][0]["source"] == "uncaptioned"

    filtered = rag(
        "search",
        "-t",
        "anything",
        "--filter",
        "tags=coast",
        "--filter",
        "tags=grid",
        "--filter",
        '{"source": {"nin": ["grid/0-0", "grid/0-1"]}}',
        "-k",
        "20",
        "--json",
    )
    sources = [r["source"] for r in json.loads(filtered.stdout)["results"]]
    assert sorted(sources) == sorted(["lighthouse"] + [f"grid/{i}-{j}" for i in range(3) for j in range(3)][2:])

    hostile = rag("search", "-t", "x", "--filter", 'source=" or 1==1 or "', "--json")
    assert hostile.exit_code == 0 and json.loads(hostile.stdout)["results"] == []

    hybrid = rag("search", "-t", "rocky cliff", "--hybrid", "--json")
    data = json.loads(hybrid.stdout)
    assert data["hybrid"] is True and data["results"][0]["text"] == LIGHTHOUSE
    assert data["blend"] == {"weights": {"fused": 0.5, "bm25": 0.5}, "fusion": "rrf", "tuned": False}
    assert data["score_scale"] == "rrf"


def test_a_default_text_search_reaches_text_items_and_filters_by_modality(rag, corpus) -> None:
    everything = json.loads(rag("search", "-t", NOTES[1], "-k", "20", "--json").stdout)
    assert everything["mode"] == "text-to-any" and everything["results"][0]["source"] == "notes/1"
    assert {r["metadata"]["modality"] for r in everything["results"]} == {"text", "image+text", "image"}
    texts = json.loads(rag("search", "-t", NOTES[1], "-f", "modality=text", "-k", "20", "--json").stdout)
    assert [r["source"] for r in texts["results"]][0] == "notes/1" and len(texts["results"]) == 3
    assert {r["metadata"]["modality"] for r in texts["results"]} == {"text"}
    pictures = json.loads(rag("search", "-t", "x", "-f", "modality=image", "--json").stdout)
    assert [r["source"] for r in pictures["results"]] == ["uncaptioned"]
    refused = rag("search", "-t", "x", "--mode", "text-to-multimodal", "-f", "modality=text")
    message = " ".join(refused.stderr.split())
    assert refused.exit_code == 2 and "set --mode to text-to-any or text-to-text" in message
    assert "MetadataFilters" not in message
    table = " ".join(rag("search", "-t", NOTES[1], "-k", "20", "--wide").stdout.split())
    assert "│ 1 │" in table and "notes/1 │ text │" in table and "│ image+text │" in table  # one list, kinds shown
    unknown = rag("search", "-t", "x", "-f", "modality=txt")
    assert unknown.exit_code == 2 and "unknown value(s) 'txt'" in unknown.stderr


def test_search_and_ask_pass_the_blend_to_one_store_search(rag, monkeypatch) -> None:
    searched = []
    original = MilvusStore.hybrid_search

    def spy(self, *args, **kwargs):
        searched.append(kwargs["blend"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MilvusStore, "hybrid_search", spy)
    result = rag("search", "-t", "rocky cliff", "--blend", "fused=2,image=3,bm25=5", "--min-score", "0.1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    weights = {"fused": 0.2, "image": 0.3, "bm25": 0.5}
    assert data["blend"] == {"weights": pytest.approx(weights), "fusion": "weighted", "tuned": False}
    assert data["score_scale"] == "weighted" and data["hybrid"] is True and data["results"][0]["text"] == LIGHTHOUSE
    assert all(0.1 <= r["score"] < 1 for r in data["results"])
    table = rag("search", "-t", "rocky cliff", "--blend", "image,bm25", "--fusion", "rrf", "-k", "2")
    assert "blend image + bm25 (rrf)" in " ".join(table.stdout.split()) and "reciprocal-rank" in table.stdout
    asked = rag("ask", "Where is the rocky cliff?", "--blend", "fused=0.5,bm25=0.5", "-k", "2")
    assert asked.exit_code == 0 and "[1] lighthouse: " + LIGHTHOUSE in asked.stdout
    assert [dict(b.weights) for b in searched] == [weights, {"image": 0.5, "bm25": 0.5}, {"fused": 0.5, "bm25": 0.5}]


def test_duplicates_are_merged_by_default_and_counted(rag, corpus) -> None:
    args = ("search", "-t", COPIES, "-i", str(corpus.pictures[4]), "-k", "3")
    merged = json.loads(rag(*args, "--dedup", "--json").stdout)
    assert (
        merged["merged"] == 1
        and [r["source"] for r in merged["results"]].count("copies/a")
        + [r["source"] for r in merged["results"]].count("copies/b")
        == 1
    )
    assert sum(len(r["duplicates"]) for r in merged["results"]) == 1
    assert "1 duplicate merged" in " ".join(rag(*args, "--dedup").stdout.split())
    every = json.loads(rag(*args, "--json").stdout)
    assert every["merged"] == 0 and {"copies/a", "copies/b"} <= {r["source"] for r in every["results"]}


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give a query"),
        (("-t", "x", "--mode", "sideways"), "--mode must be one of text-to-any, text-to-multimodal"),
        (("-t", "x", "--mode", "image-to-image"), "needs a query image"),
        (("-t", "x", "--filter", "novalue"), "key=value"),
        (("-t", "x", "--filter", "{bad json"), "not valid JSON"),
        (("-t", "x", "--filter", '{"created_at": {"~": 1}}'), "unknown filter operator"),
        (("-i", "/no/such/picture.png"), "is not a file"),
        (("-t", "x", "-c", "missing"), "no collection 'missing'"),
        (("-t", "x", "--blend", "fused=0.5,colour=0.5"), "unknown signal(s) 'colour'"),
        (("-t", "x", "--blend", "fused=-1,image=1"), "weights must be 0 or more"),
        (("-t", "x", "--blend", "fused=0,image=0"), "every weight in the blend is 0"),
        (("-t", "x", "--blend", "fused:1"), "written as signal=weight pairs"),
        (("-t", "x", "--blend", "fused=much"), "'much', not a number"),
        (("-t", "x", "--blend", "fused=1,image=2", "--fusion", "rrf"), "takes no weights"),
        (("-t", "x", "--blend", "fused,bm25", "--hybrid"), "not both"),
        (("-t", "x", "--hybrid", "--min-score", "0.5"), "means nothing on RRF"),
        (("-t", "x", "--blend", "fused,image", "--min-score", "-0.5"), "outside the weighted scale"),
        (("-t", "x", "--min-score", "1.5"), "outside the cosine scale"),
        (("-t", "x", "--blend", "fused,bm25", "-c", "plain"), "created without it"),
    ],
)
def test_search_errors_are_clear(rag, plain, args, message) -> None:
    result = rag("search", *args)
    assert result.exit_code == 2 and message in " ".join(result.stderr.split())


def test_ask_without_llm_prints_the_labelled_evidence(rag, corpus) -> None:
    result = rag("ask", "Where is the lighthouse?", "--image", str(corpus.pictures[3]), "-k", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("No LLM is configured") and "[1] lighthouse: " + LIGHTHOUSE in result.stdout


def test_ask_with_an_llm_prints_the_answer_and_citations(rag, corpus) -> None:
    with FakeLLMServer(Reply("On a rocky cliff [1].")) as server:
        result = rag(
            "ask",
            "Where is the lighthouse?",
            "--image",
            str(corpus.pictures[3]),
            "-k",
            "2",
            "--llm-base-url",
            server.url,
            "--llm-model",
            "vision-test",
            "--max-image-side",
            "32",
        )
        as_json = rag(
            "ask", "Where is the lighthouse?", "-k", "2", "--llm-base-url", server.url, "--llm-model", "m", "--json"
        )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("On a rocky cliff [1].")
    assert f"[1] lighthouse  id={corpus.id('lighthouse')}  image={corpus.pictures[3]}" in result.stdout
    text, images = user_parts(server.requests[0])
    assert len(images) == 3 and LIGHTHOUSE in text and "Where is the lighthouse?" in text
    data = json.loads(as_json.stdout)
    assert data["status"] == "answered" and data["citations"][0]["cited"] is True


def test_ask_when_the_llm_fails_exits_4_with_the_evidence(rag, corpus, monkeypatch) -> None:
    with FakeLLMServer(Reply(status=503)) as server:
        monkeypatch.setenv("RAG_LLM_MAX_RETRIES", "0")
        result = rag(
            "ask", "Where is the lighthouse?", "-k", "2", "--llm-base-url", server.url, "--llm-model", "m", "--json"
        )
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    assert data["status"] == "llm_error" and "HTTP 503" in data["error"] and len(data["citations"]) == 2


def test_ask_says_a_failed_rerank_once_and_names_the_endpoint(rag, corpus, caplog) -> None:
    with FakeLLMServer(Reply("the second one"), Reply("See [1].")) as server:
        result = rag(
            "ask",
            "Where is the lighthouse?",
            "-k",
            "2",
            "--rerank",
            "1",
            "--llm-base-url",
            server.url,
            "--llm-model",
            "m",
        )
        url = server.url
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).count("rerank skipped") == 1
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    unreachable = rag("ask", "Where is the lighthouse?", "-k", "2", "--llm-base-url", url, "--llm-model", "m")
    assert unreachable.exit_code == 4 and f"cannot reach the LLM endpoint {url}" in unreachable.stdout


@pytest.fixture(scope="module")
def reranker_folder(tmp_path_factory: pytest.TempPathFactory):
    from .tiny_reranker import build_reranker

    return build_reranker(tmp_path_factory.mktemp("cross-encoder"))


def test_search_with_a_cross_encoder_keeps_the_best_of_the_candidates(rag, reranker_folder, monkeypatch) -> None:
    from rag.embeddings.cross_encoder import CrossEncoder
    from rag.runtime import Runtime

    folder = str(reranker_folder)
    reranking = ("--reranker", folder, "--rerank-candidates", "20", "--json")
    everything = rag("search", "-t", "rocky cliff", "-k", "20", *reranking)
    assert everything.exit_code == 0, everything.output
    results = json.loads(everything.stdout)["results"]
    scores = [r["rerank_score"] for r in results]
    assert len(results) > 5 and scores == sorted(scores, reverse=True)
    float32 = Runtime(device="cpu", dtype="float32", batch_size=8, workers=1)
    scorer = CrossEncoder.from_pretrained(folder, runtime=float32)
    texts = [r["text"] or r["name"] for r in results]  # a picture without a caption is scored on its name
    assert scores == pytest.approx(scorer.score("rocky cliff", texts), abs=1e-4)
    assert all(r["score"] is not None and "rerank_score" not in r["metadata"] for r in results)

    best = json.loads(rag("search", "-t", "rocky cliff", "-k", "3", *reranking).stdout)
    assert [r["id"] for r in best["results"]] == [r["id"] for r in results[:3]]  # the top 3 of the same 20 candidates
    monkeypatch.setenv("RAG_RERANKER", folder)
    monkeypatch.setenv("RAG_RERANK_CANDIDATES", "20")
    normalized = json.loads(rag("search", "-t", "rocky cliff", "-k", "3", "--rerank-normalize", "--json").stdout)
    assert [r["id"] for r in normalized["results"]] == [r["id"] for r in results[:3]]
    assert all(0 < r["rerank_score"] < 1 for r in normalized["results"])
    table = rag("search", "-t", "rocky cliff", "-k", "3", "--wide")
    assert table.exit_code == 0 and "rerank" in table.stdout


def test_a_model_that_is_not_a_reranker_is_refused_before_searching(rag, corpus, tmp_path, monkeypatch) -> None:
    from .tiny_reranker import build_reranker

    searched = []
    monkeypatch.setattr(MilvusStore, "search", lambda self, *a, **k: searched.append(1))
    two = build_reranker(tmp_path / "two-labels", labels=2)
    result = rag("search", "-t", "rocky cliff", "--reranker", str(two))
    assert result.exit_code == 2 and "2 labels" in " ".join(result.stderr.split()) and searched == []
    missing = rag("ask", "where?", "--reranker", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "--reranker" in missing.stderr and searched == []
    no_text = rag("search", "--image", str(corpus.pictures[0]), "--reranker", str(two))
    assert no_text.exit_code == 2 and "give --text" in no_text.stderr and searched == []


def test_the_llm_rerank_keeps_its_old_flag(rag) -> None:
    for spelled in ("--llm-rerank", "--rerank"):
        result = rag("ask", "rocky cliff", "-k", "3", spelled, "2", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["status"] == "no_llm"  # the rerank needs an LLM; the order is kept
    assert "--llm-rerank" in rag("ask", "--help").stdout
