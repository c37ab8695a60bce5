"""BM25 over the whole collection on Milvus Lite, checked against bm25s; blends whose top n does not depend on k."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import bm25s
import numpy as np
import pytest

from connectors.milvus import Blend, MilvusStore, bm25
from rag.items import KnowledgeItem

from .milvus_corpus import ENCODER, image_item, text_item, unit_vectors

WORDS = "river stone forest cloud harbour lantern meadow copper violet engine signal garden".split()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MilvusStore]:
    with MilvusStore.open(str(tmp_path / "lite" / "milvus.db"), "knowledge", encoder_info=ENCODER) as opened:
        yield opened


def _texts(n: int, seed: int) -> list[str]:
    """Captions of 3 to 25 words drawn from a small vocabulary, so that words repeat across items."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 26)))) for _ in range(n)]


def _ingest_in_runs(store: MilvusStore, runs: list[list[KnowledgeItem]]) -> list[KnowledgeItem]:
    """Each run written and flushed apart, as separate `rag ingest` runs do; vectors from a fixed seed."""
    everything: list[KnowledgeItem] = []
    for number, items in enumerate(runs):
        vectors = unit_vectors(len(items), seed=number)
        store.upsert(items, vectors, vectors)
        store.flush()
        everything += items
    return everything


def _bm25s_scores(texts: list[str], query: str) -> np.ndarray:
    """An independent BM25 (bm25s, Lucene's variant) over the texts as one corpus, scaled by (k1 + 1) as Milvus's."""
    retriever = bm25s.BM25(method="lucene", k1=bm25.K1, b=bm25.B)
    retriever.index(_tokens(texts), show_progress=False)
    return retriever.get_scores(_tokens([query])[0]) * (bm25.K1 + 1)


def _tokens(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, lower=True, stopwords=None, return_ids=False, show_progress=False)


@pytest.mark.parametrize("query", ["river", "stone forest", "copper copper engine", "lantern meadow violet"])
def test_scores_over_several_runs_equal_one_bm25_over_the_whole_corpus(store, monkeypatch, query) -> None:
    monkeypatch.setattr(bm25, "AVGDL_TOLERANCE", 0.0)  # every drift of the average length rewrites the weights
    texts = _texts(45, seed=1)
    runs = [[text_item(i, text=t) for i, t in enumerate(texts[:30])]]
    runs += [[text_item(30 + i, text=t) for i, t in enumerate(texts[30:44])], [text_item(44, text=texts[44])]]
    items = _ingest_in_runs(store, runs)
    expected = _bm25s_scores(texts, query)
    hits = store.text_search(query, k=len(items))
    scores = {hit.id: hit.score for hit in hits}
    assert len(hits) == int((expected > 0).sum())
    for item, score in zip(items, expected):
        assert scores.get(item.id, 0.0) == pytest.approx(score, rel=1e-4, abs=1e-6)


def test_a_word_in_a_small_later_ingest_scores_as_in_one_ingest(store) -> None:
    filler = _texts(40, seed=2)
    long_caption = "a long caption about many things where the word zebra appears once " + filler[0] * 2
    first = [text_item(0, text=long_caption)] + [text_item(i, text=t) for i, t in enumerate(filler[1:], start=1)]
    second = [text_item(100, text="zebra zebra zebra")]
    _ingest_in_runs(store, [first, second])
    assert [hit.id for hit in store.text_search("zebra", k=5)] == [second[0].id, first[0].id]
    vector = unit_vectors(1, seed=9)[0]
    for fusion in ("weighted", "rrf"):
        blended = store.hybrid_search(vector, "zebra", blend=Blend.of({"bm25": 1.0}, fusion), k=2)
        assert [hit.id for hit in blended] == [second[0].id, first[0].id], fusion


def test_statistics_follow_replacements_deletes_and_a_run_killed_between_writes(store) -> None:
    texts = _texts(20, seed=3)
    items = _ingest_in_runs(store, [[text_item(i, text=t) for i, t in enumerate(texts)]])
    store.upsert([items[0].model_copy(update={"text": "river river river"})], unit_vectors(1))  # same id, new text
    store.delete(ids=[items[1].id, items[2].id])
    store.flush()
    kept = ["river river river", *texts[3:]]
    terms = store._core.terms
    assert terms is not None
    expected, _ = bm25.count(kept)
    stored = terms.stats.read(expected.df)
    assert (stored.docs, stored.tokens, stored.df) == (expected.docs, expected.tokens, expected.df)
    terms.stats.clear()  # as if a run had died after writing rows and before counting them
    store.flush()
    assert terms.stats.read(expected.df).df == expected.df
    scores = {hit.id: hit.score for hit in store.text_search("river", k=20)}
    reference = _bm25s_scores(kept, "river")
    ids = [items[0].id, *(item.id for item in items[3:])]
    for item_id, score in zip(ids, reference):
        assert scores.get(item_id, 0.0) == pytest.approx(score, rel=1e-4, abs=1e-6)


def test_words_no_item_has_find_nothing(store) -> None:
    _ingest_in_runs(store, [[text_item(0, text="river stone"), image_item(1, text="")]])
    assert store.text_search("unheard of", k=5) == []
    vector = unit_vectors(1)[0]
    assert store.hybrid_search(vector, "unheard", blend=Blend.parse("bm25"), k=5) == []
    assert len(store.hybrid_search(vector, "unheard", blend=Blend.parse("fused,bm25", "rrf"), k=5)) == 2


def test_blends_are_prefix_stable_on_a_collection_ingested_in_several_runs(store) -> None:
    texts = _texts(60, seed=4)
    runs = [
        [image_item(i, text=t) for i, t in enumerate(texts[:25])],
        [text_item(25 + i, text=t) for i, t in enumerate(texts[25:45])],
        [image_item(45 + i, text=t) for i, t in enumerate(texts[45:])],
    ]
    items = _ingest_in_runs(store, runs)
    # Two more runs of exact copies: equal scores on every signal, so only the id can order them.
    copies = [image_item(200 + i, text=items[i].text) for i in range(5)]
    vectors = unit_vectors(5, seed=0)  # items 0..4's vectors
    for part in (slice(0, 3), slice(3, 5)):
        store.upsert(copies[part], vectors[part], vectors[part])
        store.flush()
    query = vectors[2]
    blends = [
        Blend.parse("fused=0.5,image=0.3,bm25=0.2"),
        Blend.parse("fused,bm25", "rrf"),
        Blend.parse("fused,image", "rrf"),
    ]
    for blend in blends:
        full = [hit.id for hit in store.hybrid_search(query, "river stone forest", blend=blend, k=40)]
        for k in (1, 2, 3, 5, 9):
            top = [hit.id for hit in store.hybrid_search(query, "river stone forest", blend=blend, k=k)]
            assert top == full[:k], (blend.describe(), k)
        scores = [hit.score for hit in store.hybrid_search(query, "river stone forest", blend=blend, k=40)]
        ties = [(a, b) for (a, b), (s, t) in zip(zip(full, full[1:]), zip(scores, scores[1:])) if s == t]
        assert all(a < b for a, b in ties)


def test_weighted_blends_map_bm25_as_bm25_whatever_stores_it(store) -> None:
    texts = _texts(30, seed=5)
    items = _ingest_in_runs(store, [[text_item(i, text=t) for i, t in enumerate(texts)]])
    query, words = unit_vectors(1, seed=6)[0], "cloud harbour"
    bm25_scores = {hit.id: hit.score for hit in store.text_search(words, k=30)}
    cosines = {hit.id: hit.score for hit in store.search(query, k=30)}
    blended = store.hybrid_search(query, words, blend=Blend.parse("fused=0.25,bm25=0.75"), k=30)
    assert len(blended) == len(items)
    for hit in blended:
        bm25_part = 2 * math.atan(bm25_scores.get(hit.id, 0.0)) / math.pi
        assert hit.score == pytest.approx(0.25 * (0.5 + math.atan(cosines[hit.id]) / math.pi) + 0.75 * bm25_part)
