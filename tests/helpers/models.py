"""The tiny seeded Visualized-BGE the tests load (tests/fixtures/parity), as settings a command or a process reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
#: The suite's own settings, which a test's environment keeps unless it names others: a shared Milvus Lite server
#: outlives its last user by 3 s (every test has its own folder), and commands do their work in their own process
#: (no warm model process left behind; tests/cli/test_warm.py asks for one).
SUITE_SETTINGS = {"RAG_MILVUS_LITE_IDLE": "3", "RAG_KEEP_WARM": "0"}


def parity_dir(variant: str = "base") -> Path:
    """The folder of a tiny model: its weights, text model and vision config, and the reference outputs."""
    return PARITY / variant


def tiny_model_fields(variant: str = "base") -> dict[str, str]:
    """The ``Settings`` fields ``weights``, ``text_model`` and ``vision_config`` naming the tiny model."""
    tiny = parity_dir(variant)
    return {
        "weights": str(tiny / "weights.pth"),
        "text_model": str(tiny / "text_model"),
        "vision_config": str(tiny / "vision_config.json"),
    }


def tiny_model_env(variant: str = "base") -> dict[str, str]:
    """``RAG_WEIGHTS``, ``RAG_TEXT_MODEL`` and ``RAG_VISION_CONFIG`` naming the tiny model."""
    return {f"RAG_{name.upper()}": value for name, value in tiny_model_fields(variant).items()}


def process_env(**values: str) -> dict[str, str]:
    """The environment of a ``rag`` subprocess: this one's without any ``RAG_*`` of the developer's, the suite's
    settings, the tiny model's, then ``values``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAG_")}
    return {**env, **SUITE_SETTINGS, **tiny_model_env(), **values}


def use_tiny_model(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """This process's environment as :func:`process_env` builds it: no ``RAG_*`` of the developer's, the
    suite's and the tiny model's settings, then ``values``."""
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    for name, value in {**SUITE_SETTINGS, **tiny_model_env(), **values}.items():
        monkeypatch.setenv(name, value)
