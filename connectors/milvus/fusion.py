"""A blend's fusion: each signal's ranked candidates into one ranking, on the scale ``blend`` documents.

The store fuses on its side rather than in Milvus's ``hybrid_search``, for two reasons:

- the weighted scale must not depend on the backend. Milvus normalises a signal by its index's
  metric, and on Milvus Lite the BM25 signal is an inner product over the store's own weights
  (``connectors.milvus.bm25``), which Milvus would map as a vector (0.5 + arctan(s)/π), not as BM25;
- ties must break by id, so that for every k the results are the first k of one ranking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from connectors.milvus.blend import Blend

#: ``(id, raw score)`` pairs, best first, as one signal's search returned them.
Ranked = Sequence[tuple[str, float]]


def normalised(signal: str, score: float) -> float:
    """A signal's raw score mapped into 0..1 as Milvus's ``norm_score`` maps it: arctan for IP and BM25."""
    if signal == "bm25":
        return 2.0 * math.atan(score) / math.pi
    return 0.5 + math.atan(score) / math.pi


def fuse(candidates: Mapping[str, Ranked], blend: Blend, rrf_k: int = 60) -> list[tuple[str, float]]:
    """Every candidate with its blended score, best first, ties broken by id.

    Weighted: ``Σ wᵢ·normalised(sᵢ)`` over the signals that found the item; RRF: ``Σ 1/(rrf_k + rankᵢ)``
    with ranks from 1 in each signal's list (ordered by score, then id).
    """
    scores: dict[str, float] = {}
    for signal, ranked in candidates.items():
        ordered = sorted(ranked, key=lambda pair: (-pair[1], pair[0]))
        for rank, (item_id, score) in enumerate(ordered, start=1):
            if blend.fusion == "rrf":
                part = 1.0 / (rrf_k + rank)
            else:
                part = blend.weights[signal] * normalised(signal, score)
            scores[item_id] = scores.get(item_id, 0.0) + part
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
