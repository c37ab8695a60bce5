"""Hyper-parameters of the EVA02-CLIP vision tower and the published Visualized-BGE variants."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VisionConfig(BaseModel):
    """The vision tower's settings, with the key names of EVA-CLIP's ``vision_cfg``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = 224
    layers: int = 12
    width: int = 768
    head_width: int = 64
    patch_size: int = 16
    mlp_ratio: float = 2.6667
    pt_hw_seq_len: int = 16
    intp_freq: bool = True
    rope: bool = True
    naiveswiglu: bool = True
    subln: bool = True
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    embed_dim: int | None = Field(
        default=None, description="Output size of the (unused) CLIP head; defaults to `width`."
    )
    # Present in EVA-CLIP configs; they change training or kernels only, not what inference computes.
    eva_model_name: str | None = None
    drop_path_rate: float = 0.0
    patch_dropout: float = 0.0
    xattn: bool = False
    fusedLN: bool = False

    @model_validator(mode="after")
    def _eva02_only(self) -> VisionConfig:
        missing = [k for k in ("rope", "naiveswiglu", "subln") if not getattr(self, k)]
        if missing:
            raise ValueError(
                f"only the EVA02 vision tower of Visualized-BGE is implemented; {', '.join(missing)} must be true"
            )
        if self.width % self.head_width:
            raise ValueError(f"width {self.width} is not a multiple of head_width {self.head_width}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        return self

    @property
    def num_heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def head_dim(self) -> int:
        return self.embed_dim or self.width

    @classmethod
    def load(cls, source: VisionConfig | dict[str, Any] | str | os.PathLike[str]) -> VisionConfig:
        """Accept a config, a dict, or the path of a JSON file with the same keys."""
        if isinstance(source, VisionConfig):
            return source
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            try:
                source = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"cannot read vision config {path}: {e}") from e
        return cls.model_validate(source)


EVA02_CLIP_B16 = VisionConfig(layers=12, width=768, patch_size=16, embed_dim=512, eva_model_name="eva-clip-b-16-X")
EVA02_CLIP_L14 = VisionConfig(layers=24, width=1024, patch_size=14, embed_dim=768, eva_model_name="eva-clip-l-14")

HUB_REPO = "BAAI/bge-visualized"


@dataclass(frozen=True)
class Variant:
    """A published checkpoint: its file in ``BAAI/bge-visualized``, its text model and vision tower."""

    name: str
    checkpoint: str
    text_model: str
    vision: VisionConfig


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("bge-visualized-base-en-v1.5", "Visualized_base_en_v1.5.pth", "BAAI/bge-base-en-v1.5", EVA02_CLIP_B16),
        Variant("bge-visualized-m3", "Visualized_m3.pth", "BAAI/bge-m3", EVA02_CLIP_L14),
    )
}


def variant_for_checkpoint(filename: str) -> Variant | None:
    """The variant whose official file name is exactly ``filename`` (a local copy of a hub file)."""
    return next((v for v in VARIANTS.values() if v.checkpoint == filename), None)
