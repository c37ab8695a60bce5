"""Encoders that map text, images and image+text pairs into one vector space."""

from .base import Encoder, FusedNotSupportedError, ImageInput
from .visualized_bge import CheckpointError, ImageLoadError, VisualizedBGE

__all__ = ["CheckpointError", "Encoder", "FusedNotSupportedError", "ImageInput", "ImageLoadError", "VisualizedBGE"]
