"""BAAI's Visualized-BGE on torch + transformers, loading the official checkpoints."""

from ..inputs import ImageLoadError
from .configuration import EVA02_CLIP_B16, EVA02_CLIP_L14, HUB_REPO, VARIANTS, VisionConfig
from .encoder import VisualizedBGE
from .loading import CheckpointError
from .modeling import VisualizedBGEModel

__all__ = [
    "EVA02_CLIP_B16",
    "EVA02_CLIP_L14",
    "HUB_REPO",
    "VARIANTS",
    "CheckpointError",
    "ImageLoadError",
    "VisionConfig",
    "VisualizedBGE",
    "VisualizedBGEModel",
]
