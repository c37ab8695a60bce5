"""The encoder factories read the CLI's settings (RAG_*) for what they are not given; arguments given win."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.embeddings import VisualizedBGE
from rag.embeddings.clip import CLIPEncoder
from rag.embeddings.registry import settings_with
from rag.settings import Settings
from tests.conftest import parity_dir
from tests.embeddings.tiny_transformers import build_clip

TINY = parity_dir("base")


@pytest.fixture
def tiny_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAG_ENCODER", "RAG_WEIGHTS", "RAG_BATCH_SIZE", "RAG_WORKERS", "RAG_COMPILE", "RAG_PREPROCESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_TEXT_MODEL", str(TINY / "text_model"))
    monkeypatch.setenv("RAG_VISION_CONFIG", str(TINY / "vision_config.json"))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_DTYPE", "float32")


def test_from_pretrained_reads_the_text_model_and_vision_config_settings(tiny_env: None) -> None:
    # A checkpoint under a name of its own needs its text model and vision config: here from RAG_*.
    encoder = VisualizedBGE.from_pretrained(TINY / "weights.pth")
    assert encoder.runtime.device == "cpu" and encoder.runtime.dtype == "float32"
    assert encoder.encode_text(["a bridge"]).shape == (1, encoder.dim)


def test_arguments_given_win_over_the_settings(tiny_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_WEIGHTS", str(TINY / "weights.pth"))
    monkeypatch.setenv("RAG_TEXT_MODEL", "/nowhere/text-model")
    encoder = VisualizedBGE.from_pretrained(text_model=TINY / "text_model", dtype="bfloat16", batch_size=3)
    assert encoder.checkpoint == Path(TINY / "weights.pth")  # RAG_WEIGHTS, as nothing else was given
    assert encoder.runtime.dtype == "bfloat16" and encoder.runtime.batch_size == 3


def test_transformers_encoders_read_the_weights_their_encoder_is_set_to(
    tiny_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAG_ENCODER", "clip")
    monkeypatch.setenv("RAG_WEIGHTS", str(build_clip(tmp_path / "clip")))
    clip = CLIPEncoder.from_pretrained()
    assert clip.runtime.dtype == "float32" and clip.encode_text(["a bridge"]).shape == (1, clip.dim)


def test_settings_with_keeps_what_was_not_given() -> None:
    base = Settings(top_k=3, device="cpu")
    assert settings_with(base) is base
    changed = settings_with(base, device="cuda", dtype=None)
    assert (changed.device, changed.dtype, changed.top_k, base.device) == ("cuda", "auto", 3, "cpu")
