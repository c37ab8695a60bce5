"""Blends: which stored signals one query searches, and how Milvus fuses them into one ranking.

Each item is stored with three signals:

- ``fused``: the vector of the item as a whole (picture read with its caption; text for text-only items);
- ``image``: the vector of the picture alone; an item without a picture answers it with its text's vector,
  so text chunks are neither dropped nor favoured by a blend for having no picture;
- ``bm25``: full-text search over the item's text (collections created with BM25).

A blend searches some of them: each signal returns a fixed number of candidates (100, or k when
larger) and the store fuses them (``connectors.milvus.fusion``), by weights or by reciprocal rank,
ties broken by id, so the first n results of any k are the same. ``--blend
fused=0.6,image=0.3,bm25=0.1`` is written ``Blend.parse``'s way.

What a score means (:class:`ScoreScale`):

- ``cosine``: one vector searched (no blend): the cosine of the query and item vectors, -1 to 1.
- ``weighted``: ``Σ wᵢ·sᵢ`` with the weights scaled to sum to 1 and each signal's raw score
  mapped into 0..1 as Milvus's ``norm_score`` maps it: ``0.5 + arctan(cosine)/π`` for a vector (cosine 1
  gives 0.75, 0 gives 0.5, -1 gives 0.25) and ``2·arctan(bm25)/π`` for BM25. A signal that did not
  return the item among its candidates adds 0. Scores lie in 0..1; a blend of vectors alone
  reaches at most 0.75.
- ``rrf``: ``Σ 1/(60 + rankᵢ)`` over the signals that returned the item: positions only, about
  0.016 per signal at best. No threshold means anything on it, so none is accepted.

Importing this module costs no LlamaIndex: the CLI checks a blend before loading anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field

from rag.errors import RagError

Fusion = Literal["weighted", "rrf"]
FUSIONS: tuple[str, ...] = ("weighted", "rrf")
#: The signals in their canonical order (the order of a blend's requests and weights).
SIGNALS: tuple[str, ...] = ("fused", "image", "bm25")
#: The collection property holding the blends ``rag eval --tune`` saved, by query kind.
TUNED_BLENDS = "tuned_blends"
_EXAMPLE = "fused=0.6,image=0.3,bm25=0.1"


class BlendError(RagError, ValueError):
    """A blend that cannot be searched: unknown signal, bad weight, or a signal the collection lacks."""


class ScoreScale(str, Enum):
    """What a result's score is (see the module docstring)."""

    COSINE = "cosine"
    WEIGHTED = "weighted"
    RRF = "rrf"

    @property
    def meaning(self) -> str:
        return {
            "cosine": "cosine similarity of one vector, -1 to 1",
            "weighted": "weighted blend of normalised signal scores, 0 to 1",
            "rrf": "reciprocal-rank fusion: positions only, about 0.016 per signal at best",
        }[self.value]

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The range a score threshold may take on this scale; None where thresholds mean nothing (RRF)."""
        return {"cosine": (-1.0, 1.0), "weighted": (0.0, 1.0)}.get(self.value)


@dataclass(frozen=True)
class Blend:
    """The signals a query searches, each with its share of the score (shares sum to 1), and the fusion."""

    weights: Mapping[str, float]
    fusion: Fusion = "weighted"

    @classmethod
    def of(cls, weights: Mapping[str, Any], fusion: str = "weighted") -> Blend:
        """A checked blend: known signals, finite weights >= 0, at least one above 0; RRF takes equal weights.

        Zero-weight signals are left out; the others are scaled to sum to 1.
        """
        if fusion not in FUSIONS:
            raise BlendError(f"fusion must be weighted or rrf, not {fusion!r}")
        unknown = [str(name) for name in weights if name not in SIGNALS]
        if unknown:
            raise BlendError(
                f"unknown signal(s) {', '.join(map(repr, unknown))} in the blend; signals: {', '.join(SIGNALS)} "
                f"(written as signal=weight pairs, e.g. {_EXAMPLE})"
            )
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise BlendError(f"the weight of {name} is {weight!r}, not a finite number")
            if weight < 0:
                raise BlendError(f"the weight of {name} is {weight}; weights must be 0 or more")
        positive = {name: float(weights[name]) for name in SIGNALS if weights.get(name, 0) > 0}
        if not positive:
            raise BlendError(
                f"every weight in the blend is 0: give at least one signal a positive weight, e.g. {_EXAMPLE}"
            )
        if fusion == "rrf" and len(set(positive.values())) > 1:
            raise BlendError(
                "RRF fuses by rank and takes no weights: name the signals alone (e.g. fused,image,bm25) "
                "or use weighted fusion"
            )
        total = sum(positive.values())
        return cls({name: weight / total for name, weight in positive.items()}, fusion)  # type: ignore[arg-type]

    @classmethod
    def parse(cls, spec: str, fusion: str = "weighted") -> Blend:
        """``fused=0.6,image=0.3,bm25=0.1``, or signal names alone for equal shares (``fused,image``)."""
        weights: dict[str, Any] = {}
        for part in spec.split(","):
            name, sep, value = (piece.strip() for piece in part.partition("="))
            if not name:
                raise BlendError(f"blend {spec!r}: write signal=weight pairs separated by commas, e.g. {_EXAMPLE}")
            if name in weights:
                raise BlendError(f"blend {spec!r}: {name} is given twice")
            try:
                weights[name] = float(value) if sep else 1.0
            except ValueError:
                raise BlendError(f"blend {spec!r}: the weight of {name} is {value!r}, not a number") from None
        return cls.of(weights, fusion)

    @classmethod
    def hybrid(cls, vector: str = "fused", fusion: str = "rrf") -> Blend:
        """A vector signal and bm25 in equal parts: what ``--hybrid`` searches."""
        return cls.of({vector: 1.0, "bm25": 1.0}, fusion)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Blend:
        """The blend ``to_dict`` wrote."""
        return cls.of(data.get("weights") or {}, data.get("fusion", "weighted"))

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @property
    def score_scale(self) -> ScoreScale:
        return ScoreScale.RRF if self.fusion == "rrf" else ScoreScale.WEIGHTED

    def to_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "fusion": self.fusion}

    def describe(self) -> str:
        """``fused 0.60 + image 0.40 (weighted)``, or ``fused + bm25 (rrf)``."""
        if self.fusion == "rrf":
            return f"{' + '.join(self.signals)} (rrf)"
        return " + ".join(f"{name} {weight:.2f}" for name, weight in self.weights.items()) + " (weighted)"


class TunedBlend(BaseModel):
    """A blend ``rag eval --tune`` found best for one kind of query, as saved on the collection."""

    weights: dict[str, float]
    fusion: Fusion = "weighted"
    queries: int = Field(description="How many labelled queries it was tuned on.")
    metrics: dict[str, float] = Field(description="Its Recall@k, MRR and nDCG on those queries.")
    tuned_at: datetime

    @property
    def blend(self) -> Blend:
        return Blend.of(self.weights, self.fusion)


def scale_of(blend: Blend | None) -> ScoreScale:
    """The scale of the scores a search with ``blend`` gives (None: one vector, cosine)."""
    return blend.score_scale if blend is not None else ScoreScale.COSINE


def check_threshold(threshold: float | None, scale: ScoreScale) -> None:
    """Raise ``BlendError`` when ``threshold`` means nothing on ``scale`` (any threshold on RRF, or out of range)."""
    if threshold is None:
        return
    if scale.bounds is None:
        raise BlendError(
            "a minimum score means nothing on RRF scores (Σ 1/(60 + rank): positions, not similarity); "
            "use weighted fusion, whose scores lie in 0..1, or leave the minimum out"
        )
    low, high = scale.bounds
    if not low <= threshold <= high:
        raise BlendError(f"minimum score {threshold} is outside the {scale.value} scale ({low:g} to {high:g})")
