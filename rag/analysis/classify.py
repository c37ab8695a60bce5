"""Zero-shot classification: an image against labels turned into prompts, softmax over scaled cosines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.embeddings.base import Encoder, ImageInput

DEFAULT_TEMPLATE = "a photo of a {label}"

#: Cosine-to-logit scale for encoders that do not bring their own. CLIP was trained with a learnt
#: temperature that ends at 100 (its ``logit_scale`` clamp); the same value makes the softmax over
#: Visualized-BGE cosines comparably peaked. It changes how confident the probabilities look, never
#: their order.
DEFAULT_LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    cosine: float


def logit_scale(encoder: Encoder) -> float:
    """The encoder's own trained scale where it has one (CLIP, BridgeTower), else ``DEFAULT_LOGIT_SCALE``."""
    return float(getattr(encoder, "logit_scale", DEFAULT_LOGIT_SCALE))


def prompts(labels: Sequence[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    if "{label}" not in template:
        raise ValueError(f"the template must contain {{label}}, got {template!r}")
    if not labels:
        raise ValueError("give at least one label")
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be distinct")
    return [template.replace("{label}", label) for label in labels]


def classify(
    encoder: Encoder,
    images: Sequence[ImageInput],
    labels: Sequence[str],
    *,
    template: str = DEFAULT_TEMPLATE,
    scale: float | None = None,
    top_k: int | None = None,
) -> list[list[Prediction]]:
    """For each image, the labels by probability (highest first), at most ``top_k`` of them.

    Probabilities are ``softmax(scale · cos(image, prompt))`` over the prompts made from ``template``;
    ``scale`` defaults to :func:`logit_scale`.
    """
    text_vectors = encoder.encode_text(prompts(labels, template))
    image_vectors = encoder.encode_image(images)
    cosines = image_vectors @ text_vectors.T
    logits = (logit_scale(encoder) if scale is None else scale) * cosines.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    keep = len(labels) if top_k is None else max(1, min(top_k, len(labels)))
    results = []
    for row_p, row_c in zip(probabilities, cosines):
        order = np.argsort(-row_p, kind="stable")[:keep]
        results.append([Prediction(labels[i], float(row_p[i]), float(row_c[i])) for i in order])
    return results
