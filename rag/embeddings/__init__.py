"""Encoders that map text, images and image+text pairs into one vector space."""

from typing import Any

from .base import Encoder, FusedNotSupportedError, ImageInput
from .hub import CheckpointError
from .inputs import ImageLoadError
from .visualized_bge import VisualizedBGE

# Imported on first use: each pulls in its transformers model code, seconds the CLI should not pay for nothing.
_LAZY = {"BridgeTowerEncoder": ".bridgetower", "CLIPEncoder": ".clip"}

__all__ = [
    "BridgeTowerEncoder",
    "CLIPEncoder",
    "CheckpointError",
    "Encoder",
    "FusedNotSupportedError",
    "ImageInput",
    "ImageLoadError",
    "VisualizedBGE",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
