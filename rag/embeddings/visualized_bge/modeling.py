"""Visualized-BGE: a BGE text encoder that also reads EVA02-CLIP image tokens.

Attribute names are the checkpoint's top-level keys (``bge_embeddings``, ``bge_encoder``,
``bge_pooler``, ``model_visual``, ``visual_proj``), so the official ``.pth`` files load with
``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PretrainedConfig

from .configuration import VisionConfig
from .vision import EVACLIPVision


class VisualizedBGEModel(nn.Module):
    def __init__(self, text_config: PretrainedConfig, vision_config: VisionConfig):
        super().__init__()
        text_model = AutoModel.from_config(text_config, attn_implementation="sdpa")
        self.text_config = text_config
        self.vision_config = vision_config
        self.bge_embeddings = text_model.embeddings
        self.bge_encoder = text_model.encoder
        # Unused at inference (CLS pooling reads the last hidden state), but part of the checkpoint.
        self.bge_pooler = text_model.pooler
        self.model_visual = EVACLIPVision(vision_config)
        self.visual_proj = nn.Linear(vision_config.width, text_config.hidden_size)

    @property
    def dim(self) -> int:
        return self.text_config.hidden_size

    @property
    def num_image_tokens(self) -> int:
        return self.vision_config.num_patches

    def _encode(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the text transformer and return the L2-normalised CLS vector."""
        additive = (1.0 - attention_mask[:, None, None, :].to(embeddings.dtype)) * torch.finfo(embeddings.dtype).min
        hidden = self.bge_encoder(embeddings, attention_mask=additive)[0]
        return F.normalize(hidden[:, 0].float(), dim=-1)

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # position_ids=None: the text model numbers positions itself (RoBERTa skips its padding index).
        embeddings = self.bge_embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        return self._encode(embeddings, attention_mask)

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch tokens of the vision tower, projected into the text model's embedding space."""
        tokens = self.visual_proj(self.model_visual.visual(pixel_values)[:, 1:])
        positions = torch.arange(1, 1 + tokens.shape[1], device=tokens.device)
        return self.bge_embeddings.LayerNorm(tokens + self.bge_embeddings.position_embeddings(positions))

    def embed_fused(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embed [text CLS] + image tokens + the rest of the text as one sequence.

        Image tokens take positions 1..N; the text after its CLS continues from N+1. Pass
        ``image_tokens`` (from :meth:`image_tokens`) instead of pixels to reuse one vision pass.
        """
        if image_tokens is None:
            if pixel_values is None:
                raise ValueError("embed_fused needs pixel_values or image_tokens")
            image_tokens = self.image_tokens(pixel_values)
        image = image_tokens
        n_image, n_text = image.shape[1], input_ids.shape[1]
        positions = torch.cat((torch.zeros(1, dtype=torch.long), torch.arange(n_image + 1, n_image + n_text))).to(
            input_ids.device
        )
        text = self.bge_embeddings(
            input_ids=input_ids, position_ids=positions[None], token_type_ids=torch.zeros_like(input_ids)
        )
        sequence = torch.cat((text[:, :1], image, text[:, 1:]), dim=1)
        image_mask = attention_mask.new_ones(attention_mask.shape[0], n_image)
        mask = torch.cat((attention_mask[:, :1], image_mask, attention_mask[:, 1:]), dim=1)
        return self._encode(sequence, mask)

    def embed_fused_and_image(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        blank_ids: torch.Tensor,
        blank_mask: torch.Tensor,
    ) -> torch.Tensor:
        """``[fused | image-only]`` vectors side by side, from one pass of the vision tower.

        The image-only vector is the image fused with an empty text (``blank_ids``, one row per image).
        """
        image = self.image_tokens(pixel_values)
        fused = self.embed_fused(None, input_ids, attention_mask, image_tokens=image)
        return torch.cat((fused, self.embed_fused(None, blank_ids, blank_mask, image_tokens=image)), dim=1)
