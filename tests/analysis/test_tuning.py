"""Blend tuning: the grid search, and a store built so that the best weights are known in advance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.milvus import MilvusStore
from rag.analysis import EvalQuery
from rag.analysis.tuning import compositions, grid_search, save_tuned, tune_blends
from rag.retrieval import MultimodalRetriever
from tests.retrieval.synthetic import Synthetic, normalised

# Query "alpha" wants its target over a distractor strong on the fused vector: the image weight
# must be high enough. Query "beta" wants its target over one strong on the image vector: not too high.
TARGET = (0.5, 0.5)
BY_FUSED = (0.562, 0.4)
BY_IMAGE = (0.43, 0.6)


def test_compositions_cover_the_simplex() -> None:
    points = list(compositions(4, 3))
    assert len(points) == 15 and len(set(points)) == 15 and all(sum(p) == 4 and min(p) >= 0 for p in points)
    assert points[0] == (4, 0, 0) and points[-1] == (0, 0, 4)


def test_grid_search_refines_between_coarse_points() -> None:
    peak = (8, 7, 5)  # 0.40, 0.35, 0.25: not on the coarse grid (steps of 0.25 = 5 units)
    best, scored = grid_search(lambda p: (-sum((a - b) ** 2 for a, b in zip(p, peak)),), 3)
    assert best == peak and len(scored) < len(list(compositions(20, 3)))


def test_ties_go_to_the_fewest_signals_then_the_middle() -> None:
    best, _ = grid_search(lambda p: (1.0 if p[2] == 0 and 6 <= p[1] <= 10 else 0.0,), 3)
    assert best == (12, 8, 0)
    best, _ = grid_search(lambda p: (1.0,), 2)  # everything ties: one signal beats two
    assert best in ((20, 0), (0, 20))


@pytest.fixture
def synthetic() -> Synthetic:
    data = Synthetic()
    data.add("target-a", "alpha", *TARGET)
    data.add("distractor-a", "alpha", *BY_FUSED)
    data.add("target-b", "beta", *TARGET)
    data.add("distractor-b", "beta", *BY_IMAGE)
    return data


@pytest.fixture
def store(synthetic: Synthetic, tmp_path: Path) -> Iterator[MilvusStore]:
    with synthetic.store(tmp_path / "milvus.db") as opened:
        yield opened


QUERIES = [
    EvalQuery(id="a", text="alpha", relevant=["target-a"]),
    EvalQuery(id="b", text="beta", relevant=["target-b"]),
]


def _mix(weights: tuple[float, float], cosines: tuple[float, float]) -> float:
    return weights[0] * normalised("fused", cosines[0]) + weights[1] * normalised("image", cosines[1])


@pytest.mark.slow
def test_the_tuner_finds_the_known_best_weights_saves_them_and_queries_use_them(store, synthetic) -> None:
    # The image weights (on the fine grid) at which both targets come first, from the documented score.
    fine = [step / 20 for step in range(21)]
    best_image = [
        w
        for w in fine
        if _mix((1 - w, w), TARGET) > _mix((1 - w, w), BY_FUSED)
        and _mix((1 - w, w), TARGET) > _mix((1 - w, w), BY_IMAGE)
    ]
    assert len(best_image) == 1 and best_image[0] not in (0.0, 0.25, 0.5, 0.75, 1.0)  # only refinement finds it

    encoder = synthetic.encoder()
    [text] = tune_blends(encoder, store, QUERIES)
    assert (text.kind, text.queries, text.signals) == ("text", 2, ("fused", "image", "bm25"))
    assert text.best == pytest.approx({"fused": 1 - best_image[0], "image": best_image[0]})
    assert text.metrics["mrr@10"] == 1.0 and text.metrics["recall@1"] == 1.0
    assert all(alone["mrr@10"] < 1.0 for alone in text.alone.values())  # no signal alone ranks both targets first
    assert store.tuned_blends() == {}  # tuning alone saves nothing

    saved = save_tuned(store, [text])
    assert store.tuned_blends() == saved and saved["text"].blend.weights == pytest.approx(text.best)
    assert store.stats().tuned_blends["text"].metrics == text.metrics

    def first(**kwargs: object) -> str:
        return MultimodalRetriever(store, encoder, top_k=1, **kwargs).retrieve("alpha")[0].node.metadata["source"]

    assert first() == "target-a"  # the saved blend, by default
    assert first(blend={"fused": 1.0}) == "distractor-a"  # --blend overrides it
    assert first(mode="text-to-multimodal") == "distractor-a"  # and so does an explicit mode: its vector alone


@pytest.mark.slow
def test_queries_matching_no_item_are_refused_and_nothing_is_saved(store, synthetic) -> None:
    lost = [EvalQuery(id=q.id, text=q.text, relevant=["not-stored.png"]) for q in QUERIES]
    with pytest.raises(ValueError, match="none of the 2 queries found any of its relevant items"):
        tune_blends(synthetic.encoder(), store, lost)
    assert store.tuned_blends() == {}


def test_kinds_without_a_choice_are_reported_not_tuned(store, synthetic) -> None:
    clip_like = synthetic.encoder(supports_fused=False)
    image_query = EvalQuery(id="i", image="/synthetic/alpha.png", relevant=["target-a"])
    clip_like.vectors["/synthetic/alpha.png"] = synthetic.query("alpha")
    results = {r.kind: r for r in tune_blends(clip_like, store, [*QUERIES, image_query])}
    assert results["text"].signals == ("image", "bm25") and results["text"].best is not None
    assert results["image"].signals == ("image",) and "nothing to blend" in (results["image"].skipped or "")
