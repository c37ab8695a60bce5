"""Our encoder against golden outputs of the reference Visualized-BGE (tests/fixtures/parity/README.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import load_tiny

# Float32 embeddings agree with the reference's to a few units in the last place (the largest difference measured
# was 1.5e-7, on values up to about 0.5); the README states this bound.
ATOL = 3e-7


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def pixels(p, i: int) -> torch.Tensor:
    return torch.from_numpy(p.expected[f"pixels/{i}"])


def ids(p, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = torch.from_numpy(p.expected[f"text_ids/{i}"])
    return input_ids, torch.ones_like(input_ids)


def test_preprocessing_matches_reference_pixels(parity):
    p, enc = parity
    for i, path in enumerate(p.images):
        np.testing.assert_array_equal(enc.preprocess([path]).numpy(), p.expected[f"pixels/{i}"])  # bit for bit


def test_tokenizer_ids_match_reference(parity):
    p, enc = parity
    for i, text in enumerate(p.cases["texts"]):
        ours = enc.tokenize([text], enc.max_text_tokens)["input_ids"].numpy()
        np.testing.assert_array_equal(ours, p.expected[f"text_ids/{i}"])


def test_text_from_token_ids(parity):
    p, enc = parity
    with torch.inference_mode():
        for i in range(len(p.cases["texts"])):
            ours = enc.model.embed_text(*ids(p, i)).numpy()
            np.testing.assert_allclose(ours, p.expected[f"text/{i}"], atol=ATOL, rtol=0)


def test_image_from_pixels(parity):
    p, enc = parity
    empty = enc.tokenize([""], enc.max_fused_text_tokens)
    with torch.inference_mode():
        for i in range(len(p.images)):
            ours = enc.model.embed_fused(pixels(p, i), empty["input_ids"], empty["attention_mask"]).numpy()
            np.testing.assert_allclose(ours, p.expected[f"image/{i}"], atol=ATOL, rtol=0)


def test_fused_from_pixels_and_token_ids(parity):
    p, enc = parity
    with torch.inference_mode():
        for k, case in enumerate(p.cases["fused"]):
            ours = enc.model.embed_fused(pixels(p, case["image"]), *ids(p, case["text"])).numpy()
            np.testing.assert_allclose(ours, p.expected[f"fused/{k}"], atol=ATOL, rtol=0)


def test_end_to_end_from_files(parity):
    p, enc = parity
    texts = p.cases["texts"]
    expected_texts = np.concatenate([p.expected[f"text/{i}"] for i in range(len(texts))])
    np.testing.assert_allclose(enc.encode_text(texts), expected_texts, atol=ATOL, rtol=0)
    images = enc.encode_image(p.images)
    expected_images = np.concatenate([p.expected[f"image/{i}"] for i in range(len(p.images))])
    np.testing.assert_allclose(images, expected_images, atol=ATOL, rtol=0)
    fused = p.cases["fused"]
    ours = enc.encode_fused([p.images[c["image"]] for c in fused], [texts[c["text"]] for c in fused])
    expected_fused = np.concatenate([p.expected[f"fused/{k}"] for k in range(len(fused))])
    np.testing.assert_allclose(ours, expected_fused, atol=ATOL, rtol=0)


def test_padded_batches_match_reference(parity):
    p, enc = parity
    np.testing.assert_allclose(enc.encode_text(p.cases["batch_texts"]), p.expected["batch_text"], atol=ATOL, rtol=0)
    stacked = [pixels(p, i)[0] for i in range(len(p.images))]
    np.testing.assert_allclose(enc.encode_image(stacked), p.expected["batch_image"], atol=ATOL, rtol=0)
    fused = enc.encode_fused(p.images, p.cases["batch_fused_texts"])
    np.testing.assert_allclose(fused, p.expected["batch_fused"], atol=ATOL, rtol=0)


@pytest.mark.slow
def test_batched_equals_one_by_one(parity):
    p, enc = parity
    texts = p.cases["batch_fused_texts"]
    one_by_one = np.concatenate([enc.encode_fused([img], [t]) for img, t in zip(p.images, texts)])
    singles = np.concatenate([enc.encode_text([t]) for t in p.cases["texts"]])
    for batch_size in (1, 2, 16):  # the references are computed once for the three batch sizes
        batched = load_tiny(p.variant, batch_size=batch_size)
        fused = batched.encode_fused(p.images, texts)
        np.testing.assert_allclose(fused, one_by_one, atol=ATOL, rtol=0, err_msg=f"batch_size={batch_size}")
        text = batched.encode_text(p.cases["texts"])
        np.testing.assert_allclose(text, singles, atol=ATOL, rtol=0, err_msg=f"batch_size={batch_size}")


def test_every_image_input_kind_agrees(parity):
    p, enc = parity
    path = p.images[0]
    as_path = enc.encode_image([path])
    for other in (str(path), path.read_bytes(), Image.open(path), enc.preprocess([path])[0]):
        np.testing.assert_allclose(enc.encode_image([other]), as_path, atol=ATOL, rtol=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_stays_close_to_float32(parity, dtype):
    p, enc = parity
    half = load_tiny(p.variant, dtype=dtype)
    # float32's outputs are the reference's (test_padded_batches_match_reference): compare with those, not recomputed
    fused = half.encode_fused(p.images, p.cases["batch_fused_texts"])
    assert cosines(fused, p.expected["batch_fused"]).min() >= 0.999
    assert cosines(half.encode_text(p.cases["batch_texts"]), p.expected["batch_text"]).min() >= 0.999
    assert cosines(half.encode_image(p.images), p.expected["batch_image"]).min() >= 0.999
    assert half.fingerprint == enc.fingerprint  # a collection written in one dtype is queryable in another


def test_outputs_are_unit_float32(parity):
    p, enc = parity
    out = enc.encode_fused(p.images[:2], ["a", "b"])
    assert out.dtype == np.float32 and out.shape == (2, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_fused_and_image_from_one_vision_pass(parity):
    p, enc = parity
    texts = p.cases["batch_fused_texts"]
    fused, image = enc.encode_fused_and_image(p.images, texts)
    np.testing.assert_allclose(fused, enc.encode_fused(p.images, texts), atol=ATOL, rtol=0)
    np.testing.assert_allclose(image, enc.encode_image(p.images), atol=ATOL, rtol=0)
