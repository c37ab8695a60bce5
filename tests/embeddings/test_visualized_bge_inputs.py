"""Awkward and hostile inputs: long texts, odd image modes, broken files, wrong checkpoints."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rag.embeddings import CheckpointError, ImageLoadError, VisualizedBGE
from rag.embeddings.inputs import load_image
from rag.embeddings.visualized_bge import loading
from tests.conftest import load_tiny, parity_dir

PHOTO = parity_dir("base") / "images" / "wiki_candi_1.jpg"


def photo(mode: str = "RGB", size: tuple[int, int] = (320, 240)) -> Image.Image:
    return Image.open(PHOTO).convert("RGB").resize(size).convert(mode)


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


# -- text ---------------------------------------------------------------------------------------


def test_overlong_text_is_truncated_not_fatal(tiny_base):
    long = "blue whale " * 2000
    vec = tiny_base.encode_text([long])
    ids = tiny_base.tokenize([long], tiny_base.max_text_tokens)["input_ids"]
    assert ids.shape[1] == tiny_base.max_text_tokens == 512
    truncated = tiny_base.tokenizer.decode(ids[0, 1:-1])
    np.testing.assert_allclose(vec, tiny_base.encode_text([truncated]), atol=1e-5)


def test_overlong_fused_text_fits_the_position_budget(tiny_base):
    # BERT has 512 positions and the image takes 196 of them: the reference crashes here.
    long = "blue whale " * 2000
    vec = tiny_base.encode_fused([PHOTO], [long])
    assert tiny_base.max_fused_text_tokens == 512 - 196
    ids = tiny_base.tokenize([long], tiny_base.max_fused_text_tokens)["input_ids"]
    truncated = tiny_base.tokenizer.decode(ids[0, 1:-1])
    np.testing.assert_allclose(vec, tiny_base.encode_fused([PHOTO], [truncated]), atol=1e-5)


def test_overlong_text_m3_uses_its_own_budget():
    enc = load_tiny("m3")
    assert enc.max_text_tokens == 1026 - 2  # RoBERTa positions start after the padding index
    assert enc.max_fused_text_tokens == 1026 - 256
    assert np.isfinite(enc.encode_fused([PHOTO], ["word " * 5000])).all()
    assert np.isfinite(enc.encode_text(["word " * 5000])).all()


def test_empty_text_is_valid(tiny_base):
    # The reference's image embedding of PHOTO (image 4 of the base fixture), computed by its own image path.
    reference = np.load(parity_dir("base") / "expected.npz")["image/4"]
    fused, image_part = tiny_base.encode_fused_and_image([PHOTO], ["a caption"])
    for with_empty_text in (tiny_base.encode_fused([PHOTO], [""]), tiny_base.encode_fused_and_image([PHOTO], [""])[0]):
        np.testing.assert_allclose(with_empty_text, reference, atol=1e-6)
    np.testing.assert_allclose(image_part, reference, atol=1e-6)
    assert float(fused[0] @ reference[0]) < 0.9999  # the caption changed the fused vector
    empty, word = tiny_base.encode_text(["", "x"])
    assert np.isfinite(empty).all() and abs(np.linalg.norm(empty) - 1) < 1e-6 and float(empty @ word) < 0.9999


def test_text_arguments_are_checked(tiny_base):
    with pytest.raises(TypeError, match="list of texts"):
        tiny_base.encode_text("a single string")
    with pytest.raises(TypeError, match="must be strings"):
        tiny_base.encode_text(["ok", None])
    with pytest.raises(ValueError, match="one text per image"):
        tiny_base.encode_fused([PHOTO, PHOTO], ["only one"])
    assert tiny_base.encode_text([]).shape == (0, tiny_base.dim)


# -- images -------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tiny_base):
    upright = photo(size=(300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90° clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    data = encoded(stored, "JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image(data)
    assert loaded.size == upright.size
    # Turned by hand, and rebuilt from its pixels so that no orientation tag remains.
    reference = Image.fromarray(np.asarray(Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_270)))
    np.testing.assert_allclose(tiny_base.encode_image([data]), tiny_base.encode_image([reference]), atol=1e-6)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1", "I", "I;16", "F"])
def test_every_pil_mode_is_converted_like_the_reference(tiny_base, mode):
    image = photo(size=(300, 260)).convert("L" if mode in ("I", "I;16", "F") else "RGB").convert(mode)
    ours = tiny_base.preprocess([image])
    # The reference transform: resize (in the image's own mode), centre-crop, then convert to RGB.
    resized = image.resize((258, 224), Image.Resampling.BICUBIC).crop((17, 0, 241, 224)).convert("RGB")
    expected = (np.asarray(resized, np.float32) / 255 - [0.48145466, 0.4578275, 0.40821073]) / [
        0.26862954,
        0.26130258,
        0.27577711,
    ]
    np.testing.assert_allclose(ours[0].numpy(), expected.transpose(2, 0, 1), atol=1e-5)


def test_animated_gif_uses_its_first_frame(tiny_base):
    first, second = photo(), photo().rotate(180)
    data = encoded(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    first_frame = Image.open(io.BytesIO(data))  # a fresh GIF opens on frame 0
    np.testing.assert_allclose(tiny_base.encode_image([data]), tiny_base.encode_image([first_frame]), atol=1e-6)
    assert not np.allclose(tiny_base.encode_image([data]), tiny_base.encode_image([second]), atol=1e-3)


def test_transparent_png_from_the_fixtures_matches_reference(tiny_base):
    # shapes_rgba.png is an RGBA image with transparency among the golden cases.
    rgba = parity_dir("base") / "images" / "shapes_rgba.png"
    assert Image.open(rgba).mode == "RGBA"
    expected = np.load(parity_dir("base") / "expected.npz")["pixels/3"]
    np.testing.assert_allclose(tiny_base.preprocess([rgba]).numpy(), expected, atol=1e-5)


def broken_inputs(tmp_path: Path) -> dict[str, Path]:
    good = encoded(photo(), "PNG")
    files = {
        "zero-byte": b"",
        "not-an-image": b"just some text, not pixels\n",
        "truncated": good[: len(good) // 3],
        "corrupt-jpeg": encoded(photo(), "JPEG")[:200] + b"\x00garbage" * 50,
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.jpg"
        paths[name].write_bytes(data)
    paths["missing"] = tmp_path / "does-not-exist.jpg"
    return paths


def test_unreadable_images_raise_a_clear_error_naming_the_input(tiny_base, tmp_path):
    for path in broken_inputs(tmp_path).values():
        with pytest.raises(ImageLoadError, match=str(path)):
            tiny_base.encode_image([path])
    with pytest.raises(ImageLoadError, match="bytes"):
        tiny_base.encode_image([b"\x89PNG\r\n\x1a\n broken"])


def test_decompression_bomb_is_refused(tiny_base, monkeypatch):
    data = encoded(photo(size=(150, 100)), "PNG")  # 15,000 pixels: over the (lowered) limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageLoadError, match="decompression bomb|exceeds limit"):
        tiny_base.encode_image([data])


def test_preprocessed_tensor_must_have_the_right_shape(tiny_base):
    with pytest.raises(ImageLoadError, match=r"\(3, 224, 224\)"):
        tiny_base.encode_image([torch.zeros(3, 100, 100)])


# -- checkpoints --------------------------------------------------------------------------------


def tiny_state() -> dict[str, torch.Tensor]:
    return torch.load(parity_dir("base") / "weights.pth", weights_only=True)


def load_with(state, tmp_path: Path) -> VisualizedBGE:
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    d = parity_dir("base")
    return VisualizedBGE.from_pretrained(
        path, d / "text_model", vision_config=d / "vision_config.json", dtype="float32"
    )


def test_checkpoint_with_missing_key_is_refused(tmp_path):
    state = tiny_state()
    del state["visual_proj.weight"]
    with pytest.raises(CheckpointError, match="visual_proj.weight"):
        load_with(state, tmp_path)


def test_checkpoint_with_unexpected_key_is_refused(tmp_path):
    state = tiny_state()
    state["model_visual.visual.extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match="model_visual.visual.extra.weight"):
        load_with(state, tmp_path)


def test_checkpoint_with_wrong_shapes_is_refused(tmp_path):
    # The m3 tower has 14-pixel patches and 1026 text positions: not the base configuration.
    state = torch.load(parity_dir("m3") / "weights.pth", weights_only=True)
    with pytest.raises(CheckpointError, match="size mismatch.*patch_embed.proj.weight"):
        load_with(state, tmp_path)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_code_in_it_is_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"visual_proj.weight": Payload()}))
    d = parity_dir("base")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        VisualizedBGE.from_pretrained(path, d / "text_model", vision_config=d / "vision_config.json")


def test_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="state dict"):
        load_with([torch.zeros(1)], tmp_path)


def test_unknown_weights_name_lists_the_variants():
    with pytest.raises(CheckpointError, match="bge-visualized-base-en-v1.5.*bge-visualized-m3"):
        VisualizedBGE.from_pretrained("no-such-model")


def test_local_checkpoint_with_unofficial_name_needs_text_model(tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes((parity_dir("base") / "weights.pth").read_bytes())
    with pytest.raises(CheckpointError, match="text_model="):
        VisualizedBGE.from_pretrained(path)


def test_variant_name_resolves_through_the_hub(monkeypatch):
    asked = []

    def fake_download(repo_id: str, filename: str, **kwargs) -> str:
        asked.append((repo_id, filename))
        return str(parity_dir("base") / "weights.pth")

    monkeypatch.setattr(loading, "hf_hub_download", fake_download)
    d = parity_dir("base")
    enc = VisualizedBGE.from_pretrained(
        "bge-visualized-base-en-v1.5", d / "text_model", vision_config=d / "vision_config.json"
    )
    assert asked == [("BAAI/bge-visualized", "Visualized_base_en_v1.5.pth")]
    assert enc.variant == "bge-visualized-base-en-v1.5"
    assert enc.fingerprint.startswith("visualized-bge:bge-visualized-base-en-v1.5:64:")


@pytest.mark.slow
def test_offline_without_cached_weights_explains_what_to_do(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = "from rag.embeddings import VisualizedBGE; VisualizedBGE.from_pretrained('bge-visualized-m3')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "CheckpointError" in result.stderr
    assert "Visualized_m3.pth" in result.stderr and "RAG_WEIGHTS" in result.stderr


def test_fingerprint_changes_with_the_weights(tmp_path):
    state = tiny_state()
    first = load_with(state, tmp_path).fingerprint
    state["visual_proj.bias"] = state["visual_proj.bias"] + 1
    assert load_with(state, tmp_path).fingerprint != first
