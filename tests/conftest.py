"""Shared fixtures: the tiny seeded Visualized-BGE models whose reference outputs we must reproduce."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from rag.embeddings import VisualizedBGE

PARITY = Path(__file__).parent / "fixtures" / "parity"

# Checkpoint hashes are remembered in the user's cache folder: keep the suite's out of the real one.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="rag-test-cache-")


def parity_dir(variant: str) -> Path:
    return PARITY / variant


def load_tiny(variant: str = "base", **kwargs) -> VisualizedBGE:
    """A tiny fixture model, on the CPU in float32 unless told otherwise (parity is checked in float32)."""
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("dtype", "float32")
    d = parity_dir(variant)
    return VisualizedBGE.from_pretrained(
        d / "weights.pth", d / "text_model", vision_config=d / "vision_config.json", **kwargs
    )


class Parity:
    """One fixture folder: its cases, expected arrays and image paths."""

    def __init__(self, variant: str):
        self.variant = variant
        self.dir = parity_dir(variant)
        self.cases = json.loads((self.dir / "cases.json").read_text())
        self.expected = dict(np.load(self.dir / "expected.npz"))
        self.images = [self.dir / "images" / name for name in self.cases["images"]]


@pytest.fixture(scope="session")
def tiny_base() -> VisualizedBGE:
    return load_tiny("base")


@pytest.fixture(scope="session", params=["base", "m3"])
def parity(request) -> tuple[Parity, VisualizedBGE]:
    return Parity(request.param), load_tiny(request.param)
