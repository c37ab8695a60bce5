"""Build the configured encoder from settings (arguments or ``RAG_*`` environment)."""

from __future__ import annotations

from rag.settings import Settings

from .base import Encoder
from .visualized_bge import VisualizedBGE


def load_encoder(settings: Settings | None = None) -> Encoder:
    settings = settings or Settings()
    return VisualizedBGE.from_pretrained(
        settings.weights,
        settings.text_model,
        vision_config=settings.vision_config,
        device=settings.device,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
    )
