"""EVA02-CLIP vision tower: 2-D rotary attention, sub-LayerNorm and SwiGLU.

Attribute names follow the checkpoint (``model_visual.visual.*``) so weights load with
``load_state_dict``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import VisionConfig


def swap_pairs(x: torch.Tensor) -> torch.Tensor:
    """Swap each interleaved pair ``(a, b)`` of the last dimension to ``(b, a)``."""
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


class VisionRotaryEmbedding(nn.Module):
    """2-D rotary position embedding over the patch grid, frequencies interpolated to the grid size.

    The first half of each head's channels rotates with the patch row, the second half with
    the column; within a half, channels rotate in interleaved pairs: ``(a, b)`` becomes
    ``(a cos - b sin, b cos + a sin)``. The tables are per patch (``freqs_cos``, ``freqs_sin``, as
    in the checkpoint); the class token before the patches carries no position and is left as it is.
    """

    def __init__(self, config: VisionConfig):
        super().__init__()
        half = config.head_width // 2
        grid = config.grid_size if config.intp_freq else config.pt_hw_seq_len
        inv_freq = 1.0 / (10000 ** (torch.arange(0, half, 2).float() / half))
        coords = torch.arange(grid) / grid * config.pt_hw_seq_len
        angles = torch.outer(coords, inv_freq).repeat_interleave(2, dim=-1)  # (grid, half)
        rows = angles[:, None, :].expand(grid, grid, half)
        cols = angles[None, :, :].expand(grid, grid, half)
        table = torch.cat((rows, cols), dim=-1).reshape(grid * grid, config.head_width)
        self.freqs_cos: torch.Tensor
        self.freqs_sin: torch.Tensor
        self.register_buffer("freqs_cos", table.cos())
        self.register_buffer("freqs_sin", table.sin())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``(..., 1 + patches, head_width)``: the class token, then the patches.

        One pass over ``x`` for each product and the sum: the class token's row of the tables is the
        identity (cos 1, sin 0) and the sign of the rotation is in the sine table, so nothing is sliced,
        negated or concatenated at full size.
        """
        cos = F.pad(self.freqs_cos, (0, 0, 1, 0), value=1.0)
        sin = F.pad(self.freqs_sin.unflatten(-1, (-1, 2)), (0, 0, 0, 0, 1, 0), value=0.0)
        signed_sin = torch.stack((-sin[..., 0], sin[..., 1]), dim=-1).flatten(-2)
        return x * cos + swap_pairs(x) * signed_sin


class VisionAttention(nn.Module):
    def __init__(self, config: VisionConfig, rope: VisionRotaryEmbedding):
        super().__init__()
        dim = config.width
        self.num_heads = config.num_heads
        self.scale = config.head_width**-0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.inner_attn_ln = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.q_proj(x) + self.q_bias)
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x) + self.v_bias)
        q, k = self.rope(q), self.rope(k)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = out.transpose(1, 2).flatten(2)
        return self.proj(self.inner_attn_ln(out))


class SwiGLU(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.w1 = nn.Linear(config.width, config.mlp_hidden)
        self.w2 = nn.Linear(config.width, config.mlp_hidden)
        self.ffn_ln = nn.LayerNorm(config.mlp_hidden, eps=config.layer_norm_eps)
        self.w3 = nn.Linear(config.mlp_hidden, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class VisionBlock(nn.Module):
    def __init__(self, config: VisionConfig, rope: VisionRotaryEmbedding):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.attn = VisionAttention(config, rope)
        self.norm2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, config.width, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels).flatten(2).transpose(1, 2)


class EVAVisionTransformer(nn.Module):
    """Returns every token of the last block (class token first), before the final norm."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.width))
        self.rope = VisionRotaryEmbedding(config)
        self.blocks = nn.ModuleList(VisionBlock(config, self.rope) for _ in range(config.layers))
        # The CLIP pooling head is in the checkpoint but Visualized-BGE does not use it.
        self.norm = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.width, config.head_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if pixels.shape[-3:] != (3, size, size):
            raise ValueError(f"expected pixel tensors of shape (n, 3, {size}, {size}), got {tuple(pixels.shape)}")
        x = self.patch_embed(pixels)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x


class EVACLIPVision(nn.Module):
    """The vision half of EVA-CLIP as stored in the checkpoint: the tower and CLIP's logit scale."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.visual = EVAVisionTransformer(config)
        self.logit_scale = nn.Parameter(torch.zeros(()))
