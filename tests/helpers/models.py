"""The tiny seeded Visualized-BGE the tests load (tests/fixtures/parity), as settings a command or a process reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def parity_dir(variant: str = "base") -> Path:
    """The folder of a tiny model: its weights, text model and vision config, and the reference outputs."""
    return PARITY / variant


def tiny_model_env(variant: str = "base") -> dict[str, str]:
    """``RAG_WEIGHTS``, ``RAG_TEXT_MODEL`` and ``RAG_VISION_CONFIG`` naming the tiny model."""
    tiny = parity_dir(variant)
    return {
        "RAG_WEIGHTS": str(tiny / "weights.pth"),
        "RAG_TEXT_MODEL": str(tiny / "text_model"),
        "RAG_VISION_CONFIG": str(tiny / "vision_config.json"),
    }


def process_env(**values: str) -> dict[str, str]:
    """The environment of a ``rag`` subprocess: this one's without any ``RAG_*`` of the developer's, the tiny
    model's settings, then ``values``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAG_")}
    return {**env, **tiny_model_env(), **values}


def use_tiny_model(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """This process's environment as :func:`process_env` builds it: no ``RAG_*`` of the developer's, the tiny
    model's settings, then ``values``."""
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    for name, value in {**tiny_model_env(), **values}.items():
        monkeypatch.setenv(name, value)
