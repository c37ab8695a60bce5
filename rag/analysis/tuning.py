"""Blend tuning: for each kind of query, the weights of fused, image and BM25 that rank the relevant items best.

Labelled queries come from the JSONL files ``rag eval`` reads (``rag.analysis.evaluation``). Per kind
(text, image, composed) the weights are searched on the simplex (weights >= 0 summing to 1): a
coarse grid in steps of 0.25, then a fine grid in steps of 0.05 within 0.25 of the best coarse
points. Each point is scored as queries are searched: one hybrid search per query, fused by
Milvus (``MilvusStore.hybrid_search``, weighted). The best point has the highest nDCG@10, then
MRR@10, then Recall@1/5/10; among equals, the one with the fewest signals, then the one nearest
the middle of the equals (the least sensitive to small shifts). The corners of the grid are the
single signals alone, reported beside the best blend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from connectors.milvus.blend import Blend, TunedBlend
from rag.embeddings.base import Encoder

from .evaluation import DEPTH, EvalQuery, embed_query, evaluate

if TYPE_CHECKING:
    from connectors.milvus import MilvusStore

#: The query kinds of an evaluation file, as the retriever names them (the keys of saved blends).
KINDS = {"text": "text", "image": "image", "image+text": "composed"}
#: The order metrics are compared in; the first decides, the others break ties.
OBJECTIVE = (f"ndcg@{DEPTH}", f"mrr@{DEPTH}", "recall@1", "recall@5", "recall@10")

Units = tuple[int, ...]


@dataclass
class KindTuning:
    """The tuning of one query kind on one collection."""

    collection: str
    kind: str
    queries: int
    signals: tuple[str, ...]
    best: dict[str, float] | None = None  # the best blend's weights
    metrics: dict[str, float] = field(default_factory=dict)  # the best blend's scores
    alone: dict[str, dict[str, float]] = field(default_factory=dict)  # each signal's scores on its own
    tried: int = 0
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compositions(total: int, parts: int) -> Iterator[Units]:
    """Every tuple of ``parts`` non-negative integers summing to ``total``, in lexicographic order (largest first)."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in compositions(total - first, parts - 1):
            yield (first, *rest)


def grid_search(
    objective: Callable[[Units], tuple[float, ...]], parts: int, *, coarse: float = 0.25, fine: float = 0.05
) -> tuple[Units, dict[Units, tuple[float, ...]]]:
    """The best weights for ``objective`` (higher is better), as units of ``fine``, and every point scored.

    Coarse grid first, then the fine grid within one coarse step of the best coarse points (all of
    them when several tie).
    """
    steps, stride = round(1 / fine), round(coarse / fine)
    if not np.isclose(steps * fine, 1.0) or not np.isclose(stride * fine, coarse) or steps % stride:
        raise ValueError(f"the coarse step {coarse} must be a multiple of the fine step {fine}, and 1 of both")
    scored: dict[Units, tuple[float, ...]] = {}

    def score(point: Units) -> tuple[float, ...]:
        if point not in scored:
            scored[point] = objective(point)
        return scored[point]

    coarse_points = [tuple(u * stride for u in point) for point in compositions(steps // stride, parts)]
    top = max(score(point) for point in coarse_points)
    centres = [point for point in coarse_points if scored[point] == top]
    for point in compositions(steps, parts):
        if any(max(abs(a - b) for a, b in zip(point, centre)) <= stride for centre in centres):
            score(point)
    return _pick(scored), scored


def _pick(scored: dict[Units, tuple[float, ...]]) -> Units:
    """The best-scoring point: fewest signals, then nearest the middle of its equals, then first scored."""
    top = max(scored.values())
    tied = [point for point, value in scored.items() if value == top]
    fewest = min(sum(1 for u in point if u) for point in tied)
    simplest = [point for point in tied if sum(1 for u in point if u) == fewest]
    middle = np.mean(np.array(simplest, dtype=float), axis=0)
    return min(simplest, key=lambda point: float(np.sum((np.array(point) - middle) ** 2)))


def tune_blends(
    encoder: Encoder, store: MilvusStore, queries: Sequence[EvalQuery], *, coarse: float = 0.25, fine: float = 0.05
) -> list[KindTuning]:
    """The best blend for each kind of query in ``queries`` on ``store`` (nothing is saved; see ``save_tuned``).

    Raises ``ValueError`` when no query finds any of its relevant items, whatever the weights.
    """
    from connectors.milvus import EncoderInfo, EncoderMismatchError

    if not store.encoder.compatible_with(EncoderInfo.of(encoder)):
        raise EncoderMismatchError(
            f"collection {store.collection!r} was made with {store.encoder.describe()}, not with {encoder.name}"
        )
    results = []
    for query_kind, kind in KINDS.items():
        asked = [q for q in queries if q.kind == query_kind]
        if not asked:
            continue
        signals = tuple(
            s for s in store.signals if (s != "fused" or encoder.supports_fused) and (s != "bm25" or kind != "image")
        )
        result = KindTuning(collection=store.collection, kind=kind, queries=len(asked), signals=signals)
        results.append(result)
        if kind == "composed" and not encoder.supports_fused:
            result.skipped = f"{encoder.name} has no fused image+text embedding for composed queries"
        elif len(signals) < 2:
            result.skipped = f"only one signal ({', '.join(signals)}) to search: nothing to blend"
        else:
            _tune_kind(encoder, store, asked, result, coarse, fine)
    searched = [r for r in results if r.tried]
    if searched and not any(any(r.metrics.values()) for r in searched):
        raise ValueError(
            f"none of the {sum(r.queries for r in searched)} queries found any of its relevant items in collection "
            f"{store.collection!r}, whatever the weights: check that their `relevant` ids, sources or file names "
            "name items stored there"
        )
    return results


def _tune_kind(
    encoder: Encoder, store: MilvusStore, asked: Sequence[EvalQuery], result: KindTuning, coarse: float, fine: float
) -> None:
    vectors = {q.id: embed_query(encoder, q) for q in asked}

    def objective(point: Units) -> tuple[float, ...]:
        blend = Blend.of(dict(zip(result.signals, point)))

        def rank(query: EvalQuery) -> list[tuple[str, str, str]]:
            hits = store.hybrid_search(vectors[query.id], query.text or "", blend=blend, k=DEPTH)
            return [(hit.id, hit.item.source, hit.item.name) for hit in hits]

        means, _ = evaluate(asked, rank)
        return tuple(means[name] for name in OBJECTIVE)

    best, scored = grid_search(objective, len(result.signals), coarse=coarse, fine=fine)
    result.tried = len(scored)
    steps = sum(best)
    for index, signal in enumerate(result.signals):
        corner = tuple(steps if i == index else 0 for i in range(len(result.signals)))
        result.alone[signal] = dict(zip(OBJECTIVE, scored[corner]))
    if not any(scored[best]):
        result.skipped = (
            f"no {result.kind} query found any of its relevant items, whatever the weights: "
            "check their `relevant` entries"
        )
        return
    result.best = dict(Blend.of(dict(zip(result.signals, best))).weights)
    result.metrics = dict(zip(OBJECTIVE, scored[best]))


def save_tuned(store: MilvusStore, results: Sequence[KindTuning]) -> dict[str, TunedBlend]:
    """Save each tuned kind's best blend on the collection (kinds not tuned keep what they had); returns them."""
    now = datetime.now(timezone.utc)
    tuned = {
        r.kind: TunedBlend(weights=r.best, queries=r.queries, metrics=r.metrics, tuned_at=now)
        for r in results
        if r.best is not None and r.collection == store.collection
    }
    if tuned:
        store.save_tuned_blends(tuned)
    return tuned
