"""The vector index as a Milvus Lite collection grows: exact, then HNSW past a size; filtered searches complete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.milvus import Blend, MilvusStore, schema

from .milvus_corpus import DIM, ENCODER, image_item, text_item

THRESHOLD = 120


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MilvusStore]:
    monkeypatch.setattr(schema, "LITE_HNSW_ROWS", THRESHOLD)
    with MilvusStore.open(str(tmp_path / "lite" / "milvus.db"), "knowledge", encoder_info=ENCODER) as opened:
        yield opened


def _vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _fill(store: MilvusStore, first: int, n: int) -> tuple[list[Any], np.ndarray]:
    """``n`` items (every tenth tagged ``tenth``), written and flushed as one ingest."""
    tags = [["tenth"] if i % 10 == 0 else [] for i in range(first, first + n)]
    items = [
        image_item(i, text=f"picture {i}", tags=tag) if i % 2 else text_item(i, tags=tag)
        for i, tag in zip(range(first, first + n), tags)
    ]
    vectors = _vectors(n, seed=first)
    store.upsert(items, vectors, vectors)
    store.flush()
    return items, vectors


def _index_type(store: MilvusStore) -> str:
    return store._core.client.describe_index(store.collection, schema.FUSED)["index_type"]


def _exact(items: list[Any], vectors: np.ndarray, query: np.ndarray, k: int, keep: Any = None) -> list[str]:
    scores = vectors @ query
    order = [i for i in np.argsort(-scores, kind="stable") if keep is None or keep(items[i])]
    return [items[i].id for i in order[:k]]


@pytest.mark.slow
def test_exact_while_small_then_hnsw_and_every_search_still_answers(store) -> None:
    items, vectors = _fill(store, 0, 80)
    assert _index_type(store) == "FLAT"
    more, more_vectors = _fill(store, 80, 80)
    assert _index_type(store) == "HNSW"
    items, vectors = items + more, np.concatenate([vectors, more_vectors])
    query = _vectors(1, seed=999)[0]
    assert [h.id for h in store.search(query, k=10)] == _exact(items, vectors, query, 10)
    tenth = [h.id for h in store.search(query, k=10, filter={"tags": "tenth"})]
    assert tenth == _exact(items, vectors, query, 10, keep=lambda item: "tenth" in item.tags)
    assert [h.id for h in store.text_search("picture 81", k=1)] == [more[1].id]  # BM25 still indexed
    assert len(store.hybrid_search(query, "picture", blend=Blend.parse("fused,bm25", "rrf"), k=5)) == 5
    with MilvusStore.open(store.uri, store.collection, create=False) as reopened:
        assert [h.id for h in reopened.search(query, k=3)] == _exact(items, vectors, query, 3)


@pytest.mark.slow
def test_a_short_filtered_graph_answer_is_completed_by_an_exact_search(store, monkeypatch) -> None:
    items, vectors = _fill(store, 0, 200)
    assert _index_type(store) == "HNSW"
    client, original = store._core.client, store._core.client.search

    def cut_short(*args: Any, **kwargs: Any) -> Any:  # as a graph search that ran out of candidates
        result = original(*args, **kwargs)
        return [hits[:2] for hits in result] if kwargs.get("filter") else result

    monkeypatch.setattr(client, "search", cut_short)
    query = _vectors(1, seed=7)[0]
    expected = _exact(items, vectors, query, 10, keep=lambda item: "tenth" in item.tags)
    hits = store.search(query, k=10, filter={"tags": "tenth"}, with_vectors=True)
    assert [h.id for h in hits] == expected
    assert hits[0].score == pytest.approx(float(vectors[[i.id for i in items].index(expected[0])] @ query), abs=1e-5)
    assert hits[0].embedding is not None and hits[0].item.tags == ["tenth"]
    # A filter keeping fewer rows than k is not short: no exact search is needed to know it.
    few = store.search(query, k=10, filter={"id": [items[0].id, items[1].id]})
    assert {h.id for h in few} == {items[0].id, items[1].id}
    # Each signal of a blend is completed the same way.
    blended = store.hybrid_search(query, "", blend=Blend.parse("fused"), k=10, filter={"tags": "tenth"})
    assert [h.id for h in blended] == expected
