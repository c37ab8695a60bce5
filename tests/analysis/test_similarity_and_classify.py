"""The similarity report and zero-shot classification, on the tiny models and on hand-made vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.analysis import DEFAULT_LOGIT_SCALE, classify, logit_scale, similarity_report
from rag.embeddings import CLIPEncoder
from tests.analysis.conftest import CORPUS
from tests.embeddings.tiny_transformers import build_clip

IMAGES = [CORPUS / "carriage-day.jpg", CORPUS / "carriage-night.jpg", CORPUS / "shapes-red-square.png"]
TEXTS = ["at night", "in daylight", "make it blue"]


class AxisEncoder:
    """Texts and images on chosen axes of a 3-d space: classification outcomes known in advance."""

    name = "axes"
    dim = 3
    fingerprint = "axes"
    supports_fused = False

    def __init__(self, texts: dict[str, list[float]], image: list[float]):
        self.texts = texts
        self.image = image

    def encode_text(self, texts):
        rows = np.array([self.texts[t] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def encode_image(self, images):
        row = np.array(self.image, dtype=np.float32)
        return np.repeat((row / np.linalg.norm(row))[None], len(images), axis=0)


def test_four_way_report_with_both_measures(tiny_base) -> None:
    report = similarity_report(tiny_base, IMAGES, TEXTS)
    kinds = [row.kind for row in report.rows]
    # same-kind: each unordered pair once (3); cross-kind: every ordered pair (9)
    assert [kinds.count(k) for k in ("image vs image", "fused vs image", "text vs fused", "fused vs fused")] == [
        3,
        9,
        9,
        3,
    ]
    assert report.skipped == {}
    assert report.rows[0].left == "image carriage-day.jpg" and report.rows[0].right == "image carriage-night.jpg"
    assert any(row.left == 'text "at night"' for row in report.rows)
    for row in report.rows:
        assert row.euclidean**2 == pytest.approx(2 - 2 * row.cosine, abs=1e-5)
    assert report.identity_error < 1e-5
    assert report.cosine_ranks == report.distance_ranks
    assert report.rank_correlation == pytest.approx(1.0)
    data = report.to_dict()
    assert data["rows"][0]["cosine_rank"] == report.cosine_ranks[0] and data["rank_correlation"] == pytest.approx(1.0)


def test_images_alone_are_compared_without_texts(tiny_base) -> None:
    report = similarity_report(tiny_base, IMAGES)
    assert {row.kind for row in report.rows} == {"image vs image"} and len(report.rows) == 3
    assert report.skipped == {}  # the images alone were asked for: nothing is left out
    assert report.cosine_ranks == report.distance_ranks


def test_a_single_image_alone_is_refused_and_a_single_row_has_no_rank_correlation(tiny_base, tmp_path) -> None:
    with pytest.raises(ValueError, match="give two images or more to compare"):
        similarity_report(tiny_base, IMAGES[:1])
    clip = CLIPEncoder.from_pretrained(build_clip(tmp_path / "clip"), dtype="float32")
    single = similarity_report(clip, IMAGES[:1], TEXTS[:1])
    assert [row.kind for row in single.rows] == ["text vs image"] and single.rank_correlation is None


def test_each_row_holds_the_vectors_it_names(tiny_base) -> None:
    report = similarity_report(tiny_base, IMAGES[:2], TEXTS[:2], labels=["day", "night"])
    fused, image, text = (
        tiny_base.encode_fused(IMAGES[:2], TEXTS[:2]),
        tiny_base.encode_image(IMAGES[:2]),
        tiny_base.encode_text(TEXTS[:2]),
    )
    vectors = {
        "fused day": fused[0],
        "fused night": fused[1],
        "image day": image[0],
        "image night": image[1],
        'text "at night"': text[0],
        'text "in daylight"': text[1],
    }
    assert len(report.rows) == 1 + 4 + 4 + 1
    for row in report.rows:
        a, b = vectors[row.left], vectors[row.right]
        assert row.cosine == pytest.approx(float(a @ b), abs=1e-5), row
        assert row.euclidean == pytest.approx(float(np.linalg.norm(a - b)), abs=1e-5), row


def test_report_without_fused_embedding_says_what_it_left_out(tmp_path: Path) -> None:
    clip = CLIPEncoder.from_pretrained(build_clip(tmp_path / "clip"), dtype="float32")
    report = similarity_report(clip, IMAGES[:2], TEXTS[:2])
    assert {row.kind for row in report.rows} == {"image vs image", "text vs image"}
    assert set(report.skipped) == {"fused vs image", "text vs fused", "fused vs fused"}
    assert report.cosine_ranks == report.distance_ranks


def test_report_needs_one_text_per_image(tiny_base) -> None:
    with pytest.raises(ValueError, match="one text per image"):
        similarity_report(tiny_base, IMAGES, TEXTS[:1])


def test_zero_shot_probabilities_follow_the_scaled_cosines() -> None:
    prompts = {"a photo of a cat": [1, 0, 0], "a photo of a dog": [1, 1, 0], "a photo of a car": [0, 0, 1]}
    encoder = AxisEncoder(prompts, image=[1, 0, 0])
    (predictions,) = classify(encoder, ["any.png"], ["car", "cat", "dog"])
    assert [p.label for p in predictions] == ["cat", "dog", "car"]
    assert [p.cosine for p in predictions] == pytest.approx([1.0, 2**-0.5, 0.0])
    logits = DEFAULT_LOGIT_SCALE * np.array([1.0, 2**-0.5, 0.0])
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert [p.probability for p in predictions] == pytest.approx(expected.tolist())
    flat = classify(encoder, ["any.png"], ["car", "cat", "dog"], scale=1.0, top_k=2)[0]
    assert [p.label for p in flat] == ["cat", "dog"] and flat[0].probability < predictions[0].probability
    custom = AxisEncoder({"cat, maybe": [1, 0, 0], "dog, maybe": [0, 1, 0]}, image=[0, 1, 0])
    assert classify(custom, ["x"], ["cat", "dog"], template="{label}, maybe")[0][0].label == "dog"


def test_classification_inputs_are_checked() -> None:
    encoder = AxisEncoder({}, image=[1, 0, 0])
    with pytest.raises(ValueError, match="must contain"):
        classify(encoder, ["x"], ["cat"], template="a photo")
    with pytest.raises(ValueError, match="distinct"):
        classify(encoder, ["x"], ["cat", "cat"])
    with pytest.raises(ValueError, match="at least one label"):
        classify(encoder, ["x"], [])


def test_classify_on_real_encoders(tiny_base, tmp_path: Path) -> None:
    clip = CLIPEncoder.from_pretrained(build_clip(tmp_path / "clip"), dtype="float32")
    assert logit_scale(tiny_base) == DEFAULT_LOGIT_SCALE
    assert logit_scale(clip) == pytest.approx(clip.logit_scale)
    for encoder in (tiny_base, clip):
        results = classify(encoder, IMAGES, ["carriage", "bridge", "square", "circle"], top_k=3)
        assert len(results) == 3
        for predictions in results:
            probabilities = [p.probability for p in predictions]
            assert len(predictions) == 3 and probabilities == sorted(probabilities, reverse=True)
        everything = classify(encoder, IMAGES[:1], ["carriage", "bridge", "square", "circle"])[0]
        assert sum(p.probability for p in everything) == pytest.approx(1.0)
