"""Encoders that map text, images and image+text pairs into one vector space.

Names are imported on first use: each encoder pulls in torch and its transformers model code,
seconds that commands such as ``rag stats`` should not pay for nothing.
"""

from importlib import import_module
from typing import Any

from .base import Encoder, FusedNotSupportedError, ImageInput

_LAZY = {
    "BridgeTowerEncoder": ".bridgetower",
    "CLIPEncoder": ".clip",
    "CheckpointError": ".hub",
    "ImageLoadError": ".inputs",
    "PreparedImage": ".inputs",
    "VisualizedBGE": ".visualized_bge",
}

__all__ = ["Encoder", "FusedNotSupportedError", "ImageInput", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
