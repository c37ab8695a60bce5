"""Build the configured encoder from settings (arguments or ``RAG_*`` environment)."""

from __future__ import annotations

from pathlib import Path

from rag.settings import Settings

from .base import Encoder
from .hub import CheckpointError
from .visualized_bge import VisualizedBGE

#: What each encoder loads when ``RAG_WEIGHTS`` is not set.
DEFAULT_WEIGHTS = {
    "visualized-bge": "bge-visualized-base-en-v1.5",
    "clip": "openai/clip-vit-base-patch32",
    "bridgetower": "BridgeTower/bridgetower-large-itm-mlm-itc",
}


def load_encoder(settings: Settings | None = None) -> Encoder:
    """The encoder ``settings.encoder`` names (``RAG_ENCODER``), with ``settings.weights`` or its default."""
    settings = settings or Settings()
    weights = settings.weights or DEFAULT_WEIGHTS[settings.encoder]
    if settings.encoder == "visualized-bge":
        if Path(weights).expanduser().is_dir():
            raise CheckpointError(
                f"{weights} is a model folder, and Visualized-BGE reads a .pth file: for a CLIP or BridgeTower "
                "folder set RAG_ENCODER=clip or RAG_ENCODER=bridgetower (--encoder)"
            )
        return VisualizedBGE.from_pretrained(
            weights,
            settings.text_model,
            vision_config=settings.vision_config,
            device=settings.device,
            dtype=settings.dtype,
            batch_size=settings.batch_size,
        )
    if settings.encoder == "clip":
        from .clip import CLIPEncoder

        return CLIPEncoder.from_pretrained(
            weights, device=settings.device, dtype=settings.dtype, batch_size=settings.batch_size
        )
    from .bridgetower import BridgeTowerEncoder

    return BridgeTowerEncoder.from_pretrained(
        weights, device=settings.device, dtype=settings.dtype, batch_size=settings.batch_size
    )
