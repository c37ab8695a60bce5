"""Retrieval metrics, query files and the harness over a Milvus collection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from connectors.milvus import EncoderMismatchError, MilvusStore
from rag.analysis import MODES, EvalQuery, evaluate, evaluate_collection, load_queries, ranking_metrics
from rag.analysis.evaluation import matched_ids
from tests.analysis.conftest import CORPUS

EXAMPLE_QUERIES = Path(__file__).resolve().parents[2] / "examples" / "eval" / "queries.jsonl"


def test_metrics_of_known_rankings() -> None:
    perfect = ranking_metrics(["a", "b", "x"], {"a", "b"})
    assert perfect == {"recall@1": 0.5, "recall@5": 1.0, "recall@10": 1.0, "mrr@10": 1.0, "ndcg@10": pytest.approx(1.0)}
    late = ranking_metrics(["x", "y", "a"] + ["z"] * 7 + ["b"], {"a", "b"})
    assert late["recall@1"] == 0.0 and late["recall@5"] == 0.5 and late["recall@10"] == 0.5  # b is 11th
    assert late["mrr@10"] == pytest.approx(1 / 3)
    assert late["ndcg@10"] == pytest.approx((1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert ranking_metrics([], {"a"}) == {
        "recall@1": 0.0,
        "recall@5": 0.0,
        "recall@10": 0.0,
        "mrr@10": 0.0,
        "ndcg@10": 0.0,
    }


def test_hits_match_relevant_entries_by_id_source_or_file_name_once() -> None:
    hits = [("id1", "/data/a.png"), ("id2", "/elsewhere/a.png"), ("id3", "/data/doc.pdf#page=2"), ("id4", "/x/b.png")]
    assert matched_ids(hits, ["a.png", "doc.pdf", "id4"]) == ["a.png", "id:id2", "doc.pdf", "id4"]
    named = [("c1", "/docs/guide.md", "guide.md#install"), ("c2", "/docs/guide.md", "guide.md#usage")]
    assert matched_ids(named, ["guide.md#usage"]) == ["id:c1", "guide.md#usage"]  # a chunk by its name
    assert matched_ids(named, ["guide.md"]) == ["guide.md", "id:c2"]  # a document by its file name, once


def test_query_files_resolve_images_and_name_bad_lines(tmp_path: Path) -> None:
    queries = load_queries(EXAMPLE_QUERIES)
    assert len(queries) == 10 and {q.kind for q in queries} == {"text", "image", "image+text"}
    corpus = {p.name for p in CORPUS.iterdir()}
    for query in queries:
        assert set(query.relevant) <= corpus
        assert query.image is None or Path(query.image).is_file()
    path = tmp_path / "q.jsonl"
    path.write_text('# a comment\n\n{"text": "a cat", "relevant": ["cat.png"]}\n{"relevant": ["x"]}\n')
    with pytest.raises(ValueError, match=r"q.jsonl:4: .*a text, an image, or both"):
        load_queries(path)
    path.write_text('{"text": "a cat", "relevant": []}\n')
    with pytest.raises(ValueError, match=r"q.jsonl:1"):
        load_queries(path)
    path.write_text('{"id": "q", "text": "a", "relevant": ["x"]}\n{"id": "q", "text": "b", "relevant": ["y"]}\n')
    with pytest.raises(ValueError, match="unique"):
        load_queries(path)


def test_evaluate_any_ranker_through_the_seam() -> None:
    queries = [EvalQuery(id="1", text="a", relevant=["a.png"]), EvalQuery(id="2", text="b", relevant=["b.png"])]
    means, per_query = evaluate(queries, lambda q: [("x", "/d/x.png"), ("y", f"/d/{q.text}.png")])
    assert per_query["1"]["mrr@10"] == 0.5 and means["recall@1"] == 0.0 and means["recall@5"] == 1.0


@pytest.mark.slow
def test_harness_on_the_sample_corpus(tiny_base, corpus_store: MilvusStore) -> None:
    queries = load_queries(EXAMPLE_QUERIES)
    results = evaluate_collection(tiny_base, corpus_store, queries)
    assert [r.mode for r in results] == [m.name for m in MODES]
    assert [r.queries for r in results] == [6, 6, 2, 2, 2, 2]
    for result in results:
        assert result.skipped is None and result.collection == "corpus"
        assert set(result.per_query) == {
            q.id for q in queries if q.kind == MODES[[m.name for m in MODES].index(result.mode)].query
        }
        assert all(0.0 <= value <= 1.0 for value in result.metrics.values())
        assert result.metrics["recall@10"] == 1.0  # 7 items: everything is in the top 10
    image_mode = next(r for r in results if r.mode == "image→image")
    assert image_mode.metrics["mrr@10"] == 1.0  # the query image itself is in the corpus
    json.dumps([r.to_dict() for r in results])


def test_harness_refuses_an_encoder_the_collection_was_not_made_with(corpus_store: MilvusStore, tmp_path: Path) -> None:
    from rag.embeddings import CLIPEncoder
    from tests.embeddings.tiny_transformers import build_clip

    clip = CLIPEncoder.from_pretrained(build_clip(tmp_path / "clip"), dtype="float32")
    with pytest.raises(EncoderMismatchError, match="was made with"):
        evaluate_collection(clip, corpus_store, load_queries(EXAMPLE_QUERIES))
