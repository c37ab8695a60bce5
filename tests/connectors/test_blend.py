"""Blends as written by people (``--blend``) and by the tuner: parsing, checking, what their scores mean."""

from __future__ import annotations

import pytest

from connectors.milvus import Blend, BlendError, ScoreScale
from connectors.milvus.blend import check_threshold


def test_weights_are_scaled_to_sum_to_one_in_signal_order() -> None:
    blend = Blend.parse(" bm25=1, fused=6,image=3 ")
    assert blend.signals == ("fused", "image", "bm25")
    assert blend.weights == pytest.approx({"fused": 0.6, "image": 0.3, "bm25": 0.1})
    assert blend.describe() == "fused 0.60 + image 0.30 + bm25 0.10 (weighted)"
    assert Blend.from_dict(blend.to_dict()).weights == pytest.approx(blend.weights)
    assert blend.score_scale is ScoreScale.WEIGHTED
    assert Blend.of({"fused": 2, "image": 0}).signals == ("fused",)  # a zero weight leaves the signal out
    rrf = Blend.parse("image,bm25", "rrf")
    assert rrf.describe() == "image + bm25 (rrf)" and rrf.score_scale is ScoreScale.RRF


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fused=1,fused=2", "fused is given twice"),
        ("fused=1,,image=1", "signal=weight pairs"),
        ("fused=nan", "not a finite number"),
        ("fused=inf,image=1", "not a finite number"),
        ("text=1", "unknown signal(s) 'text'"),
        ("image=-0.1,fused=1", "weights must be 0 or more"),
        ("fused=0", "every weight in the blend is 0"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(BlendError) as refused:
        Blend.parse(spec)
    assert message in str(refused.value)


def test_bad_weights_and_fusions_are_refused() -> None:
    with pytest.raises(BlendError, match="not a finite number"):
        Blend.of({"fused": True})
    with pytest.raises(BlendError, match="weighted or rrf"):
        Blend.of({"fused": 1}, "max")
    with pytest.raises(BlendError, match="takes no weights"):
        Blend.of({"fused": 1, "image": 2}, "rrf")


def test_a_threshold_must_mean_something_on_its_scale() -> None:
    for scale, inside, outside in ((ScoreScale.COSINE, -0.5, 1.5), (ScoreScale.WEIGHTED, 0.5, -0.1)):
        check_threshold(inside, scale)
        with pytest.raises(BlendError, match=f"outside the {scale.value} scale"):
            check_threshold(outside, scale)
    check_threshold(None, ScoreScale.RRF)
    with pytest.raises(BlendError, match="means nothing on RRF"):
        check_threshold(0.01, ScoreScale.RRF)
