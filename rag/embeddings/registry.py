"""Build the configured encoder from settings (arguments or ``RAG_*`` environment).

The encoders it builds are imported when one is asked for (each costs torch and transformers); none of them
imports this module: what they read of the settings is ``configured``'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rag.runtime import Runtime
from rag.settings import Settings

from .base import Encoder
from .configured import DEFAULT_WEIGHTS, runtime_from_settings, settings_with
from .hub import CheckpointError, pretrained_source

if TYPE_CHECKING:
    from .text_window import TextWindow

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_WEIGHTS", "load_encoder", "load_text_window", "runtime_from_settings", "settings_with"]


def load_encoder(settings: Settings | None = None, runtime: Runtime | None = None) -> Encoder:
    """The encoder ``settings.encoder`` names (``RAG_ENCODER``), with ``settings.weights`` or its default,
    on ``runtime`` (default: :func:`runtime_from_settings`), whose torch thread count this process then uses."""
    settings = settings or Settings()
    runtime = runtime or runtime_from_settings(settings)
    runtime.apply_threads()
    weights = settings.weights or DEFAULT_WEIGHTS[settings.encoder]
    if settings.encoder == "visualized-bge":
        if Path(weights).expanduser().is_dir():
            raise CheckpointError(
                f"{weights} is a model folder, and Visualized-BGE reads a .pth file: for a CLIP or BridgeTower "
                "folder set RAG_ENCODER=clip or RAG_ENCODER=bridgetower"
            )
        from .visualized_bge import VisualizedBGE

        return VisualizedBGE.from_pretrained(weights, runtime=runtime, settings=settings)
    if settings.encoder == "clip":
        from .clip import CLIPEncoder

        return CLIPEncoder.from_pretrained(weights, runtime=runtime, settings=settings)
    from .bridgetower import BridgeTowerEncoder

    return BridgeTowerEncoder.from_pretrained(weights, runtime=runtime, settings=settings)


def load_text_window(settings: Settings | None = None) -> TextWindow:
    """The configured encoder's tokenizer and text window, capped at ``settings.chunk_size``, without loading
    the model: sources chunk text to it before the model is ready. When the tokenizer cannot be found here
    (a hub id not in the cache, no network), tokens are estimated, erring high, and the window is 512."""
    from .text_window import DEFAULT_WINDOW, TextWindow, load_tokenizer_window

    settings = settings or Settings()
    source = _text_source(settings)
    if source is not None:
        try:
            name, local_only = pretrained_source(source)
            return load_tokenizer_window(name, local_only=local_only, limit=settings.chunk_size)
        except (OSError, ValueError, CheckpointError) as e:
            logger.warning("tokenizer of %s not loaded (%s); chunk sizes are estimated", source, e)
    return TextWindow(None, settings.chunk_size or DEFAULT_WINDOW)


def _text_source(settings: Settings) -> str | None:
    """Where the encoder's tokenizer lives: the text model of Visualized-BGE, the model folder of the others."""
    weights = settings.weights or DEFAULT_WEIGHTS[settings.encoder]
    if settings.encoder != "visualized-bge":
        return weights
    if settings.text_model:
        return settings.text_model
    from .visualized_bge.configuration import VARIANTS, variant_for_checkpoint

    variant = VARIANTS.get(weights) or variant_for_checkpoint(Path(weights).name)
    return variant.text_model if variant else None
