"""BridgeTower (``BridgeTowerForContrastiveLearning``) behind the encoder protocol, through transformers.

Its three contrastive heads give a text vector, an image vector and a fused image+text vector (the
cross-modal tower's pooled output), all in one space. Text and image vectors come from the
uni-modal towers alone, so encoding a text never runs the vision tower and vice versa; the fused
vector needs the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from transformers import BridgeTowerForContrastiveLearning, BridgeTowerTextConfig

from .base import ImageInput
from .inputs import check_pairs
from .transformers_encoder import TransformersEncoder


class BridgeTowerEncoder(TransformersEncoder):
    """Text, image and fused embeddings of a BridgeTower ITC checkpoint, e.g.
    ``BridgeTower/bridgetower-large-itm-mlm-itc``."""

    model_type = "bridgetower"
    model_class = BridgeTowerForContrastiveLearning
    model: BridgeTowerForContrastiveLearning

    @property
    def dim(self) -> int:
        return self.model.config.contrastive_hidden_size

    @property
    def supports_fused(self) -> bool:
        return True

    @property
    def max_text_tokens(self) -> int:
        text = cast(BridgeTowerTextConfig, self.model.config.text_config)
        # RoBERTa numbers positions from padding_idx + 1.
        return min(self.tokenizer.model_max_length, text.max_position_embeddings - (text.pad_token_id or 0) - 1)

    def encode_fused(self, images: Sequence[ImageInput], texts: Sequence[str]) -> np.ndarray:
        """One vector per (image, text) pair, from the cross-modal tower."""
        return self.encode_fused_and_image(images, texts)[0]

    def encode_fused_and_image(
        self, images: Sequence[ImageInput], texts: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fused and image-only vectors of each pair, from one pass of the whole model."""
        texts = check_pairs(images, texts)

        def run(batch: list[int], pixels: torch.Tensor | None) -> torch.Tensor:
            out = self.model(**self._tokens([texts[i] for i in batch]), pixel_values=pixels)
            return torch.cat((out.cross_embeds, out.image_embeds), dim=1)

        both = self._run(len(texts), run, texts, width=2 * self.dim, images=images)
        return both[:, : self.dim], both[:, self.dim :]

    def _embed_text(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model.bridgetower.text_model(**tokens).last_hidden_state
        return self.model.itc_text_head(hidden[:, 0])

    def _embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image path of the full forward pass, without the text and cross-modal towers."""
        tower = self.model.bridgetower
        visual = tower.vision_model.visual
        hidden = visual.forward_pre(pixels)
        for block in visual.transformer.resblocks[: len(tower.text_model.encoder.layer)]:
            hidden = block(hidden)
        image_type = tower.token_type_embeddings(torch.ones(1, dtype=torch.long, device=pixels.device))
        hidden = tower.cross_modal_image_transform(visual.forward_post(hidden)) + image_type
        return self.model.itc_image_head(hidden[:, 0])
