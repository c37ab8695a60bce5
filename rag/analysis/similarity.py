"""The four-way similarity comparison: image vs image, fused vs image, text vs fused, fused vs fused.

Every row carries the cosine similarity and the Euclidean distance of one pair of vectors. On unit
vectors ``||a - b||² = 2 - 2·cos(a, b)``, so the two measures order pairs identically; the report
computes both the identity's largest deviation and the rank correlation of the two orders, so the
claim is checked on the very numbers shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations, product
from pathlib import Path
from typing import Any

import numpy as np

from rag.embeddings.base import Encoder, ImageInput
from rag.embeddings.inputs import check_pairs

#: Comparison kinds in report order; the second set stands in when the encoder has no fused embedding.
FUSED_KINDS = ("image vs image", "fused vs image", "text vs fused", "fused vs fused")
UNFUSED_KINDS = ("image vs image", "text vs image")
#: Values are ranked at this precision, so float rounding noise cannot split a tie one way but not the other.
_RANK_DECIMALS = 6


@dataclass(frozen=True)
class Comparison:
    kind: str
    left: str
    right: str
    cosine: float
    euclidean: float


@dataclass(frozen=True)
class SimilarityReport:
    encoder: str
    rows: list[Comparison]
    #: Comparison kinds left out, and why (e.g. the encoder has no fused embedding).
    skipped: dict[str, str]

    @property
    def cosine_ranks(self) -> list[int]:
        """Rank of each row when sorted by cosine, highest first (1 = most similar)."""
        return _ranks([-round(row.cosine, _RANK_DECIMALS) for row in self.rows])

    @property
    def distance_ranks(self) -> list[int]:
        """Rank of each row when sorted by Euclidean distance, smallest first."""
        return _ranks([round(row.euclidean, _RANK_DECIMALS) for row in self.rows])

    @property
    def identity_error(self) -> float:
        """Largest ``|d² - (2 - 2·cos)|`` over the rows: zero up to float rounding for unit vectors."""
        if not self.rows:
            return 0.0
        return max(abs(row.euclidean**2 - (2.0 - 2.0 * row.cosine)) for row in self.rows)

    @property
    def rank_correlation(self) -> float | None:
        """Spearman correlation of the cosine order and the distance order: 1.0 when they agree; None for a single
        row, which has no order."""
        if len(self.rows) < 2:
            return None
        cos, dist = np.array(self.cosine_ranks, float), np.array(self.distance_ranks, float)
        return float(np.corrcoef(cos, dist)[0, 1]) if cos.std() and dist.std() else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "rows": [
                {**asdict(row), "cosine_rank": c, "distance_rank": d}
                for row, c, d in zip(self.rows, self.cosine_ranks, self.distance_ranks)
            ],
            "skipped": self.skipped,
            "identity_error": self.identity_error,
            "rank_correlation": self.rank_correlation,
        }


def similarity_report(
    encoder: Encoder,
    images: Sequence[ImageInput],
    texts: Sequence[str] = (),
    labels: Sequence[str] | None = None,
) -> SimilarityReport:
    """Compare ``n`` images, their ``n`` texts and the ``n`` fused (image i, text i) pairs with each other;
    with no texts, the images alone (image vs image).

    Same-kind comparisons (image vs image, fused vs fused) take each unordered pair once; cross-kind
    ones (fused vs image, text vs fused) every ordered pair, the matching one included. Image and
    fused vectors are named by ``labels`` (default: image file names, else ``#i``), texts by themselves.
    """
    check_comparable(images, texts)
    texts = check_pairs(images, texts) if texts else []
    names = list(labels) if labels is not None else [_label(image, i) for i, image in enumerate(images)]
    if len(names) != len(images):
        raise ValueError(f"need one label per image, got {len(names)} labels and {len(images)} images")
    skipped: dict[str, str] = {}
    if not texts:  # the images alone, as asked: nothing is skipped
        vectors = {"image": encoder.encode_image(images)}
        kinds: tuple[str, ...] = ("image vs image",)
    elif encoder.supports_fused:
        vectors = {"text": encoder.encode_text(texts)}
        vectors["fused"], vectors["image"] = encoder.encode_fused_and_image(images, texts)
        kinds = FUSED_KINDS
    else:
        vectors = {"text": encoder.encode_text(texts), "image": encoder.encode_image(images)}
        kinds = UNFUSED_KINDS
        reason = f"{encoder.name} has no fused image+text embedding"
        skipped = {kind: reason for kind in FUSED_KINDS if "fused" in kind}
    n = len(names)
    row_names = {"image": names, "fused": names, "text": [_quoted(text) for text in texts]}
    rows = []
    for kind in kinds:
        left, right = kind.split(" vs ")
        pairs = combinations(range(n), 2) if left == right else product(range(n), range(n))
        for i, j in pairs:
            a, b = vectors[left][i], vectors[right][j]
            rows.append(
                Comparison(
                    kind=kind,
                    left=f"{left} {row_names[left][i]}",
                    right=f"{right} {row_names[right][j]}",
                    cosine=float(np.dot(a, b)),
                    euclidean=float(np.linalg.norm(a - b)),
                )
            )
    return SimilarityReport(encoder=encoder.name, rows=rows, skipped=skipped)


def check_comparable(images: Sequence[ImageInput], texts: Sequence[str]) -> None:
    """Refuse inputs that make no pair: a single image without a text has nothing to be compared with."""
    if len(images) < 2 and not texts:
        raise ValueError(
            f"give two images or more to compare, or one text per image: {len(images)} image(s) alone make no pair"
        )


def _label(image: ImageInput, index: int) -> str:
    return Path(image).name if isinstance(image, (str, Path)) else f"#{index}"


def _quoted(text: str, width: int = 32) -> str:
    return f'"{text}"' if len(text) <= width else f'"{text[: width - 1]}…"'


def _ranks(values: Sequence[float]) -> list[int]:
    """1-based ranks, ties sharing the lowest rank of their group."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    for position, i in enumerate(order):
        tied = position and values[i] == values[order[position - 1]]
        ranks[i] = ranks[order[position - 1]] if tied else position + 1
    return ranks
