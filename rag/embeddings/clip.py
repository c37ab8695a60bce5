"""OpenAI CLIP (and any ``CLIPModel`` checkpoint) behind the encoder protocol, through transformers."""

from __future__ import annotations

from typing import cast

import torch
from transformers import CLIPModel, CLIPTextConfig

from .transformers_encoder import TransformersEncoder


class CLIPEncoder(TransformersEncoder):
    """Text and image embeddings of a ``CLIPModel`` checkpoint, e.g. ``openai/clip-vit-base-patch32``.

    CLIP has no joint image+text embedding: ``encode_fused`` raises ``FusedNotSupportedError``,
    and ingested image+text items are stored with their image vector (see ``encode_fused_and_image``).
    """

    model_type = "clip"
    model_class = CLIPModel
    model: CLIPModel

    @property
    def dim(self) -> int:
        return int(cast(int, self.model.config.projection_dim))

    @property
    def max_text_tokens(self) -> int:
        text = cast(CLIPTextConfig, self.model.config.text_config)
        return min(self.tokenizer.model_max_length, text.max_position_embeddings)

    def _embed_text(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.text_projection(self.model.text_model(**tokens).pooler_output)

    def _embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual_projection(self.model.vision_model(pixel_values=pixels).pooler_output)
