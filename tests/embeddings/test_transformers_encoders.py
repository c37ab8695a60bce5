"""CLIP and BridgeTower behind the encoder protocol, on tiny random checkpoints built offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from transformers import BridgeTowerModel

from rag.embeddings import (
    BridgeTowerEncoder,
    CheckpointError,
    CLIPEncoder,
    Encoder,
    FusedNotSupportedError,
    ImageLoadError,
)
from rag.embeddings.registry import load_encoder
from rag.settings import Settings
from tests.conftest import parity_dir
from tests.embeddings.tiny_transformers import IMAGE_SIZE, build_bridgetower, build_clip

IMAGES = sorted((parity_dir("base") / "images").iterdir())
TEXTS = ["a red square", "a photo of a blue circle at night", "x", "", "the carriage on the bridge, lit up"]
BUILDERS = {"clip": (build_clip, CLIPEncoder), "bridgetower": (build_bridgetower, BridgeTowerEncoder)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-transformers")
    return {kind: build(root / kind) for kind, (build, _) in BUILDERS.items()}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def encoder(request: pytest.FixtureRequest, folders: dict[str, Path]):
    return BUILDERS[request.param][1].from_pretrained(folders[request.param], batch_size=2, dtype="float32")


def unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_follows_the_protocol(encoder) -> None:
    assert isinstance(encoder, Encoder)
    assert encoder.dim == 16
    assert encoder.fingerprint.startswith(f"{encoder.model_type}:16:")
    assert encoder.preprocess(IMAGES[:2]).shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_shapes_and_normalisation(encoder) -> None:
    unit_rows(encoder.encode_text(TEXTS), len(TEXTS), 16)
    unit_rows(encoder.encode_image(IMAGES), len(IMAGES), 16)
    assert encoder.encode_text([]).shape == (0, 16)


def test_batched_equals_one_by_one(encoder) -> None:
    texts = encoder.encode_text(TEXTS)  # batch_size=2: padded batches, sorted by length
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(texts[i], encoder.encode_text([text])[0], atol=1e-5)
    images = encoder.encode_image(IMAGES)
    for i, image in enumerate(IMAGES):
        np.testing.assert_allclose(images[i], encoder.encode_image([image])[0], atol=1e-5)


def test_deterministic_across_calls_and_loads(encoder, folders) -> None:
    again = type(encoder).from_pretrained(folders[encoder.model_type], batch_size=5, dtype="float32")
    assert again.fingerprint == encoder.fingerprint
    np.testing.assert_array_equal(encoder.encode_text(TEXTS), encoder.encode_text(TEXTS))
    np.testing.assert_allclose(again.encode_text(TEXTS), encoder.encode_text(TEXTS), atol=1e-6)
    np.testing.assert_allclose(again.encode_image(IMAGES), encoder.encode_image(IMAGES), atol=1e-6)


def test_every_image_input_kind_gives_the_same_vector(encoder) -> None:
    path = IMAGES[0]
    inputs = [path, str(path), path.read_bytes(), Image.open(path), encoder.preprocess([path])[0]]
    vectors = encoder.encode_image(inputs)
    np.testing.assert_allclose(vectors, np.repeat(vectors[:1], len(inputs), axis=0), atol=1e-6)


def test_bad_images_are_named(encoder) -> None:
    with pytest.raises(ImageLoadError, match="bytes"):
        encoder.encode_image([b"not an image"])
    with pytest.raises(ImageLoadError, match=r"\(3, 32, 32\)"):
        encoder.encode_image([torch.zeros(3, 8, 8)])


def test_fingerprint_tells_weights_apart_but_not_dtype(tmp_path: Path, folders) -> None:
    other = CLIPEncoder.from_pretrained(build_clip(tmp_path / "clip-seed-1", seed=1), dtype="float32")
    first = CLIPEncoder.from_pretrained(folders["clip"], dtype="float32")
    assert other.fingerprint != first.fingerprint
    assert CLIPEncoder.from_pretrained(folders["clip"], dtype="bfloat16").fingerprint == first.fingerprint


def test_clip_has_no_fused_embedding(folders) -> None:
    clip = CLIPEncoder.from_pretrained(folders["clip"], dtype="float32")
    assert clip.supports_fused is False
    with pytest.raises(FusedNotSupportedError, match="no joint image\\+text embedding.*RAG_ENCODER"):
        clip.encode_fused(IMAGES[:1], ["a caption"])
    # What ingestion stores for an image+text item: the image vector in both fields.
    fused, image = clip.encode_fused_and_image(IMAGES[:2], ["one", "two"])
    np.testing.assert_allclose(fused, clip.encode_image(IMAGES[:2]), atol=1e-6)
    np.testing.assert_array_equal(fused, image)
    assert 1 < clip.logit_scale < 101


def test_bridgetower_matches_the_transformers_forward_pass(folders) -> None:
    tower = BridgeTowerEncoder.from_pretrained(folders["bridgetower"], batch_size=2, dtype="float32")
    texts = TEXTS[: len(IMAGES)]
    with torch.inference_mode():
        tokens = tower.tokenizer(texts, padding=True, return_tensors="pt")
        out = tower.model(**tokens, pixel_values=tower.preprocess(IMAGES))
    np.testing.assert_allclose(tower.encode_text(texts), out.text_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(tower.encode_image(IMAGES), out.image_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(tower.encode_fused(IMAGES, texts), out.cross_embeds.numpy(), atol=1e-5)


@pytest.mark.slow
def test_bridgetower_fused_and_image_in_one_pass(folders) -> None:
    tower = BridgeTowerEncoder.from_pretrained(folders["bridgetower"], batch_size=2, dtype="float32")
    texts = TEXTS[: len(IMAGES)]
    fused, image = tower.encode_fused_and_image(IMAGES, texts)
    unit_rows(fused, len(IMAGES), 16)
    np.testing.assert_allclose(fused, tower.encode_fused(IMAGES, texts), atol=1e-5)
    np.testing.assert_allclose(image, tower.encode_image(IMAGES), atol=1e-5)
    for i in range(len(IMAGES)):
        np.testing.assert_allclose(fused[i], tower.encode_fused([IMAGES[i]], [texts[i]])[0], atol=1e-5)
    assert not np.allclose(fused, image, atol=1e-3)
    with pytest.raises(ValueError, match="one text per image"):
        tower.encode_fused(IMAGES, ["one"])


def test_checkpoint_of_another_kind_is_refused(folders) -> None:
    with pytest.raises(CheckpointError, match="'clip' model, not 'bridgetower'.*RAG_ENCODER"):
        BridgeTowerEncoder.from_pretrained(folders["clip"])


def test_checkpoint_without_the_contrastive_heads_is_refused(tmp_path: Path) -> None:
    base = build_bridgetower(tmp_path / "bt")
    BridgeTowerModel.from_pretrained(base).save_pretrained(tmp_path / "bt")  # the base model: no ITC heads
    with pytest.raises(CheckpointError, match="lacks weights.*itc_"):
        BridgeTowerEncoder.from_pretrained(tmp_path / "bt")


def test_missing_folder_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a model folder"):
        CLIPEncoder.from_pretrained(tmp_path / "nowhere")


def test_registry_picks_the_encoder_from_settings(folders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_ENCODER", "bridgetower")
    monkeypatch.setenv("RAG_WEIGHTS", str(folders["bridgetower"]))
    assert isinstance(load_encoder(), BridgeTowerEncoder)
    clip = load_encoder(Settings(encoder="clip", weights=str(folders["clip"]), batch_size=3))
    assert isinstance(clip, CLIPEncoder) and clip.runtime.batch_size == 3
    with pytest.raises(ValidationError):
        Settings(encoder="siglip")
    with pytest.raises(CheckpointError, match="RAG_ENCODER=clip"):
        load_encoder(Settings(encoder="visualized-bge", weights=str(folders["clip"])))


def test_clip_matches_the_transformers_features(folders) -> None:
    from transformers import AutoProcessor, CLIPModel

    clip = CLIPEncoder.from_pretrained(folders["clip"], batch_size=2, dtype="float32")
    reference = CLIPModel.from_pretrained(folders["clip"]).eval()  # loaded apart, with its own processor
    processor = AutoProcessor.from_pretrained(folders["clip"])
    texts = [text for text in TEXTS if text]
    pictures = [Image.open(path) for path in IMAGES]
    with torch.inference_mode():
        inputs = processor(
            text=texts,
            images=pictures,
            padding=True,
            truncation=True,
            max_length=reference.config.text_config.max_position_embeddings,
            return_tensors="pt",
        )
        text = reference.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        image = reference.get_image_features(pixel_values=inputs["pixel_values"])
    for ours, theirs in ((clip.encode_text(texts), text), (clip.encode_image(IMAGES), image)):
        theirs = getattr(theirs, "pooler_output", theirs)  # a tensor, or an output holding it
        expected = torch.nn.functional.normalize(theirs, dim=-1).numpy()
        np.testing.assert_allclose(ours, expected, atol=1e-5)
