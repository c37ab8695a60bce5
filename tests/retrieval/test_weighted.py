"""Weighted multi-vector search on a store built from constructed vectors: fusion in Milvus, scores as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.milvus import Blend, BlendError, MilvusStore, NotSupportedError, ScoreScale
from connectors.milvus.blend import scale_of
from connectors.milvus.store import BLEND_CANDIDATES
from rag.retrieval import Mode, MultimodalRetriever, evidence

from .synthetic import Synthetic, normalised

QUERY = "the one that looks right and reads right"
# (fused, image) cosines with the query: only the balanced item wins when both signals count.
BALANCED, BY_FUSED, BY_IMAGE = (0.8, 0.8), (0.9, 0.3), (0.3, 0.9)


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    data = Synthetic()
    data.add("balanced", QUERY, *BALANCED, tags=["keep"], pixels=b"balanced")
    # The same picture bytes and caption from another source (encoded a hair apart): a true duplicate.
    data.add("balanced-copy", QUERY, 0.79, 0.79, tags=["keep"], pixels=b"balanced", text="caption of balanced")
    data.add("by-fused", QUERY, *BY_FUSED, tags=["keep"])
    data.add("by-image", QUERY, *BY_IMAGE)
    data.add("far", QUERY, 0.1, 0.1)
    return data


@pytest.fixture(scope="module")
def store(synthetic: Synthetic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusStore]:
    with synthetic.store(tmp_path_factory.mktemp("weighted") / "milvus.db") as opened:
        yield opened


def sources(results: list[Any]) -> list[str]:
    return [r.node.metadata["source"] for r in results]


def search(store: MilvusStore, synthetic: Synthetic, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("top_k", 3)
    return MultimodalRetriever(store, synthetic.encoder(), **kwargs).retrieve(QUERY)


def test_the_balanced_item_wins_only_when_fused_and_image_are_combined(store, synthetic) -> None:
    assert sources(search(store, synthetic))[0] == "by-fused"  # the default mode: fused vectors alone
    query = synthetic.query(QUERY)
    assert [hit.item.source for hit in store.search(query, field="fused", k=1)] == ["by-fused"]
    assert [hit.item.source for hit in store.search(query, field="image", k=1)] == ["by-image"]
    for blend in ({"fused": 0.5, "image": 0.5}, {"fused": 0.6, "image": 0.4}, "fused=3,image=2"):
        assert sources(search(store, synthetic, blend=blend))[0] == "balanced", blend
    assert sources(search(store, synthetic, blend="fused,image", fusion="rrf"))[0] == "balanced"


def test_a_weighted_score_is_the_documented_mix_of_normalised_scores(store, synthetic) -> None:
    retriever = MultimodalRetriever(store, synthetic.encoder(), top_k=5, blend="fused=6,image=4")
    scores = {r.node.metadata["source"]: r.score for r in retriever.retrieve(QUERY)}
    for source, (fused, image) in (("balanced", BALANCED), ("by-fused", BY_FUSED), ("by-image", BY_IMAGE)):
        expected = 0.6 * normalised("fused", fused) + 0.4 * normalised("image", image)
        assert scores[source] == pytest.approx(expected, abs=1e-5), source
    assert scale_of(retriever.resolve_blend(_bundle())) is ScoreScale.WEIGHTED
    assert scale_of(MultimodalRetriever(store, synthetic.encoder()).resolve_blend(_bundle())) is ScoreScale.COSINE


def test_each_signal_fetches_a_fixed_number_of_candidates_whatever_k(store, synthetic, monkeypatch) -> None:
    calls: list[dict[str, Any]] = []
    client = store._core.client
    original = client.search

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(client, "search", spy)
    for top_k in (1, 2, 5):
        results = MultimodalRetriever(store, synthetic.encoder(), top_k=top_k, blend="fused=0.5,image=0.3,bm25=0.2")
        assert sources(results.retrieve(QUERY))[0] == "balanced"
    assert [c["anns_field"] for c in calls] == ["embedding", "image_embedding", "sparse_embedding"] * 3
    assert {c["limit"] for c in calls} == {BLEND_CANDIDATES}


def test_filters_threshold_and_duplicates_hold_for_blends(store, synthetic) -> None:
    blend = {"fused": 0.5, "image": 0.5}
    assert sources(search(store, synthetic, blend=blend, filters={"tags": "keep"}, top_k=5)) == ["balanced", "by-fused"]
    cut = normalised("fused", 0.8) - 0.01  # the balanced pair scores just above, every other item below
    assert sources(search(store, synthetic, blend=blend, score_threshold=cut)) == ["balanced"]
    merged = search(store, synthetic, blend=blend, top_k=5)
    [top] = [r for r in evidence(merged) if r.source == "balanced"]
    assert top.duplicates == [synthetic.items[1].id] and "balanced-copy" not in sources(merged)
    assert "balanced-copy" in sources(search(store, synthetic, blend=blend, top_k=5, dedup=False))


def test_image_targets_keep_their_condition_under_a_blend(tmp_path: Path, synthetic: Synthetic) -> None:
    from rag.items import KnowledgeItem
    from tests.connectors.milvus_corpus import unit_vectors

    words = "caption of balanced"  # the note's text: BM25 finds it first
    with synthetic.store(tmp_path / "milvus.db") as store:
        store.upsert([KnowledgeItem.create(source="note", text=words)], unit_vectors(1, seed=5))
        retriever = MultimodalRetriever(store, synthetic.encoder(), top_k=10, blend="fused=0.1,bm25=0.9")
        query = synthetic.query(QUERY)
        assert sources(retriever.search(query, Mode.COMPOSED_TO_TEXT, words)) == ["note"]
        pictures = sources(retriever.search(query, Mode.COMPOSED_TO_IMAGE, words))
        assert "note" not in pictures and pictures[0] == "balanced"


def test_every_bad_blend_is_refused_with_its_reason(store, synthetic, tmp_path: Path) -> None:
    encoder = synthetic.encoder()
    for blend, message in (
        ({"fused": 0.5, "colour": 0.5}, "unknown signal"),
        ({"fused": -0.5, "image": 1.0}, "must be 0 or more"),
        ({"fused": 0.0, "image": 0.0}, "every weight in the blend is 0"),
        ("fused=0.5;image=0.5", "not a number"),
    ):
        with pytest.raises(BlendError, match=message):
            MultimodalRetriever(store, encoder, blend=blend)
    with pytest.raises(BlendError, match="RRF fuses by rank and takes no weights"):
        MultimodalRetriever(store, encoder, blend={"fused": 0.7, "image": 0.3}, fusion="rrf")
    with pytest.raises(BlendError, match="a minimum score means nothing on RRF"):
        MultimodalRetriever(store, encoder, hybrid=True, score_threshold=0.5)
    with pytest.raises(BlendError, match="outside the weighted scale"):
        MultimodalRetriever(store, encoder, blend="fused,image", score_threshold=-0.5)
    with pytest.raises(BlendError, match="blend or hybrid, not both"):
        MultimodalRetriever(store, encoder, blend="fused,bm25", hybrid=True)
    with pytest.raises(BlendError, match="no joint image\\+text embedding"):
        MultimodalRetriever(store, synthetic.encoder(supports_fused=False), blend="fused=0.5,image=0.5")
    with pytest.raises(BlendError, match="needs query text"):
        MultimodalRetriever(store, encoder, blend="image,bm25").search(synthetic.query(QUERY), Mode.IMAGE_TO_IMAGE)
    with synthetic.store(tmp_path / "plain.db", bm25=False) as plain:
        with pytest.raises(NotSupportedError, match="created without it"):
            MultimodalRetriever(plain, encoder, blend="fused=0.9,bm25=0.1")
    assert Blend.parse("image=2,fused=2").weights == {"fused": 0.5, "image": 0.5}


def _bundle() -> Any:
    from llama_index.core.schema import QueryBundle

    return QueryBundle(QUERY)
