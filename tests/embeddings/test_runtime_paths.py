"""The fast paths keep the exact results: parallel preprocessing, the pixel batcher, the uninitialised
memory-mapped load, the fingerprint cache and compiled (bucketed) calls."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rag.embeddings import ImageLoadError, VisualizedBGE
from rag.embeddings.compiled import bucket
from rag.embeddings.inputs import PixelBatcher, PreparedImage, normalise_on_host
from rag.embeddings.preprocess import Preprocessor
from rag.embeddings.visualized_bge import loading
from rag.embeddings.visualized_bge.preprocessing import NORMALISATION, VisualizedBGETransform
from tests.conftest import load_tiny, parity_dir
from tests.embeddings.crashing import CrashOn

IMAGES = sorted((parity_dir("base") / "images").iterdir())


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size, with no pixels behind it: a decompression bomb as far as the check goes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def hostile_inputs(tmp_path: Path, monkeypatch) -> list:
    """Good images with broken ones among them: zero-byte, truncated, not an image, a decompression bomb."""
    good = IMAGES[0].read_bytes()
    small = [Image.open(p).convert("RGB").resize((90, 60)) for p in IMAGES]
    bomb = io.BytesIO()
    Image.new("RGB", (200, 160)).save(bomb, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # so 32,000 pixels is a bomb
    broken = {"empty.jpg": b"", "truncated.jpg": good[: len(good) // 3], "text.png": b"not an image"}
    paths = []
    for name, data in broken.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return [
        small[0],
        paths[0],
        small[1],
        paths[1],
        bomb.getvalue(),
        small[2],
        paths[2],
        tmp_path / "missing.jpg",
        small[3],
    ]


def test_parallel_preprocessing_equals_the_serial_path(tmp_path, monkeypatch) -> None:
    inputs = hostile_inputs(tmp_path, monkeypatch)
    transform = VisualizedBGETransform(224)
    serial = []
    for image in inputs:
        try:
            serial.append(transform(image))
        except ImageLoadError as e:
            serial.append(e)
    parallel = list(Preprocessor(transform, workers=4).map(inputs, ahead=3))
    assert len(parallel) == len(serial)
    for ours, theirs in zip(parallel, serial):
        assert type(ours) is type(theirs)
        if isinstance(ours, PreparedImage):
            assert ours.pixels.dtype == np.uint8 and np.array_equal(ours.pixels, theirs.pixels)
        else:
            assert str(ours) == str(theirs)
    errors = [r for r in parallel if isinstance(r, ImageLoadError)]
    assert len(errors) == 5 and all(str(tmp_path) in str(e) or "bytes" in str(e) for e in errors)


def test_the_encoder_api_gives_the_same_vectors_with_any_number_of_workers(tmp_path) -> None:
    texts = [f"caption {i}" * (i + 1) for i in range(len(IMAGES))]
    one = load_tiny("base", workers=1, batch_size=2)
    many = load_tiny("base", workers=4, batch_size=2)
    np.testing.assert_array_equal(one.encode_fused(IMAGES, texts), many.encode_fused(IMAGES, texts))
    with pytest.raises(ImageLoadError, match="missing.jpg"):
        many.encode_image(IMAGES + [tmp_path / "missing.jpg"])


def test_pixel_batches_are_normalised_exactly() -> None:
    prepared = [VisualizedBGETransform(224)(path) for path in IMAGES]
    batcher = PixelBatcher(torch.device("cpu"), torch.float32, NORMALISATION)
    on_device = batcher(prepared).numpy()
    on_host = np.stack([normalise_on_host(p.pixels, NORMALISATION) for p in prepared])
    assert np.array_equal(on_device, on_host)  # bit for bit
    mixed = [prepared[0], PreparedImage(on_host[1])]  # uint8 and float inputs in one batch
    assert np.array_equal(batcher(mixed).numpy(), on_host[:2])


def test_nothing_is_randomly_initialised_before_the_weights_load(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a weight was initialised only to be overwritten")

    for name in ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_", "ones_", "zeros_"):
        monkeypatch.setattr(torch.nn.init, name, refuse)
    enc = load_tiny("base")
    assert all(not p.is_meta for p in enc.model.parameters())


def test_converting_while_loading_equals_converting_after(tmp_path) -> None:
    d = parity_dir("base")
    ours = load_tiny("base", dtype="bfloat16")
    legacy = tmp_path / "legacy.pth"  # torch's old format cannot be memory-mapped: read whole instead
    torch.save(torch.load(d / "weights.pth", weights_only=True), legacy, _use_new_zipfile_serialization=False)
    plain = VisualizedBGE.from_pretrained(
        legacy, d / "text_model", vision_config=d / "vision_config.json", dtype="float32"
    )
    plain.model.to(torch.bfloat16)
    for (name, a), (_, b) in zip(ours.model.state_dict().items(), plain.model.state_dict().items()):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_the_checkpoint_hash_is_computed_once(tmp_path, monkeypatch) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes((parity_dir("base") / "weights.pth").read_bytes())
    calls = []
    real = loading.file_sha256
    monkeypatch.setattr(loading, "file_sha256", lambda p: calls.append(p) or real(p))
    first = loading.checkpoint_sha256(path)
    assert loading.checkpoint_sha256(path) == first and len(calls) == 1
    path.write_bytes(path.read_bytes() + b"\0")  # a changed file is hashed again
    assert loading.checkpoint_sha256(path) != first and len(calls) == 2


def test_buckets() -> None:
    assert [bucket(n, 256) for n in (1, 2, 3, 16, 17, 200, 256)] == [1, 2, 4, 16, 32, 256, 256]
    assert bucket(3, 316, smallest=16) == 16 and bucket(300, 316, smallest=16) == 316


def test_compiled_calls_pad_to_buckets_and_keep_the_results(monkeypatch) -> None:
    enc = load_tiny("base")
    shapes = []

    def fake_compile(function, **options):  # records what the compiled graph would see
        def run(*inputs):
            shapes.append(tuple(tuple(t.shape) for t in inputs))
            return function(*inputs)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    texts = ["a", "a somewhat longer caption", "x y z"]
    eager = enc.encode_fused(IMAGES[:3], texts)
    enc.runtime = enc.runtime.__class__(**{**enc.runtime.to_dict(), "compile": True, "batch_size": 4})
    compiled = enc.encode_fused(IMAGES[:3], texts)
    np.testing.assert_allclose(compiled, eager, atol=1e-5)
    ((pixels, ids, mask),) = shapes
    longest = enc.tokenize(texts, enc.max_fused_text_tokens)["input_ids"].shape[1]
    assert pixels[0] == ids[0] == mask[0] == 4  # 3 rows padded to a power of two
    assert ids[1] == mask[1] == bucket(longest, enc.max_fused_text_tokens, 16) > longest


def test_a_worker_that_fails_oddly_costs_that_image_only() -> None:
    def transform(image):
        if image == "poison":
            raise IndexError("the decoder walked off the end")
        return PreparedImage(np.zeros((3, 2, 2), np.uint8))

    results = list(Preprocessor(transform, workers=2).map(["a", "poison", "b"]))
    assert isinstance(results[0], PreparedImage) and isinstance(results[2], PreparedImage)
    assert isinstance(results[1], ImageLoadError) and "poison: IndexError" in str(results[1])


def test_worker_processes_give_the_same_results_as_threads(tmp_path) -> None:
    paths = list(IMAGES)
    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(IMAGES[0].read_bytes()[:500])
    inputs = [
        paths[0],
        broken,
        png_claiming(20_000, 20_000),
        paths[1].read_bytes(),
        str(paths[2]),
        tmp_path / "missing.png",
    ]
    transform = VisualizedBGETransform(224)
    threads = list(Preprocessor(transform, workers=2).map(inputs))
    processes = Preprocessor(transform, workers=2, processes=True, group=2)
    try:
        results = list(processes.map(inputs))
    finally:
        processes.close()
    for ours, theirs in zip(results, threads, strict=True):
        assert type(ours) is type(theirs)
        if isinstance(ours, PreparedImage):
            assert np.array_equal(ours.pixels, theirs.pixels)
        else:  # the same message, but for the address of PIL's BytesIO in it
            assert re.sub(" at 0x[0-9a-f]+", "", str(ours)) == re.sub(" at 0x[0-9a-f]+", "", str(theirs))
    assert "decompression bomb" in str(results[2])


def test_a_worker_process_that_dies_costs_its_file_only() -> None:
    inputs = [f"image-{i}" for i in range(10)]
    inputs[5] = "poison"
    stage = Preprocessor(CrashOn("poison"), workers=2, processes=True, group=4)
    try:
        results = list(stage.map(inputs))
    finally:
        stage.close()
    assert [isinstance(r, ImageLoadError) for r in results] == [i == 5 for i in range(10)]
    assert "poison: the process decoding it died" in str(results[5])
    assert all(r.pixels[0, 0, 0] == len(inputs[i]) for i, r in enumerate(results) if i != 5)


def test_the_encoder_gives_the_same_vectors_with_worker_processes() -> None:
    texts = [f"caption {i}" for i in range(len(IMAGES))]
    with_threads = load_tiny("base", batch_size=2)
    with_processes = load_tiny("base", batch_size=2, preprocess="processes")
    try:
        np.testing.assert_array_equal(
            with_processes.encode_fused(IMAGES, texts), with_threads.encode_fused(IMAGES, texts)
        )
    finally:
        with_processes.close()
