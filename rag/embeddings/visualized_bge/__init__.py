"""BAAI's Visualized-BGE on torch + transformers, loading the official checkpoints.

The configuration and the preprocessing import without torch (preprocessing worker processes
need nothing more); the model, encoder and loading names are imported on first use.
"""

from importlib import import_module
from typing import Any

from .configuration import EVA02_CLIP_B16, EVA02_CLIP_L14, HUB_REPO, VARIANTS, VisionConfig

_LAZY = {
    "CheckpointError": "..hub",
    "ImageLoadError": "..inputs",
    "VisualizedBGE": ".encoder",
    "VisualizedBGEModel": ".modeling",
}

__all__ = ["EVA02_CLIP_B16", "EVA02_CLIP_L14", "HUB_REPO", "VARIANTS", "VisionConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
