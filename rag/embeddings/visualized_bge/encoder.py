"""The public Visualized-BGE encoder: checkpoint, tokenizer and preprocessing behind one object."""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from ..base import ImageInput
from ..inputs import DTYPES, as_texts, check_pairs, check_runtime, embed_in_batches
from .configuration import VisionConfig
from .loading import CheckpointError, file_sha256, load_weights, resolve_checkpoint
from .modeling import VisualizedBGEModel
from .preprocessing import preprocess

logger = logging.getLogger(__name__)


class VisualizedBGE:
    """Embeds texts, images, and (image, text) pairs into one space; every vector L2-normalised float32."""

    def __init__(
        self,
        model: VisualizedBGEModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        checkpoint: Path,
        variant: str | None = None,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        batch_size: int = 16,
    ):
        torch_dtype = check_runtime(dtype, batch_size)
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=torch_dtype).eval()
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.variant = variant
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        weights: str | os.PathLike[str],
        text_model: str | os.PathLike[str] | None = None,
        *,
        vision_config: VisionConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        dtype: str = "float32",
        batch_size: int = 16,
    ) -> "VisualizedBGE":
        """Load a checkpoint.

        ``weights`` is a local ``.pth`` file or a variant name (``"bge-visualized-base-en-v1.5"``,
        ``"bge-visualized-m3"``) fetched from the hub. ``text_model`` (folder or hub id) supplies the
        text encoder's config and tokenizer; ``vision_config`` the vision tower's hyper-parameters.
        Both default by variant.
        """
        checkpoint, variant = resolve_checkpoint(weights)
        if text_model is None and variant is None:
            raise CheckpointError(
                f"{checkpoint.name} is not an official file name: pass text_model= (a folder or hub id, "
                f"e.g. BAAI/bge-base-en-v1.5) and vision_config="
            )
        if vision_config is None and variant is None:
            raise CheckpointError(f"{checkpoint.name} is not an official file name: pass vision_config=")
        text_source = str(text_model if text_model is not None else variant.text_model)  # type: ignore[union-attr]
        vision = VisionConfig.load(vision_config if vision_config is not None else variant.vision)  # type: ignore[union-attr]
        try:
            text_config = AutoConfig.from_pretrained(text_source)
            tokenizer = AutoTokenizer.from_pretrained(text_source)
        except OSError as e:
            raise CheckpointError(
                f"cannot load the text model config/tokenizer from {text_source!r}: {e}. "
                "Pass a local folder with config.json and the tokenizer files (RAG_TEXT_MODEL)."
            ) from e
        model = VisualizedBGEModel(text_config, vision)
        load_weights(model, checkpoint)
        return cls(
            model,
            tokenizer,
            checkpoint=checkpoint,
            variant=variant.name if variant else None,
            device=device or "cpu",
            dtype=dtype,
            batch_size=batch_size,
        )

    # -- what the rest of the system sees --------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def name(self) -> str:
        return self.variant or f"visualized-bge:{self.checkpoint.name}"

    @property
    def supports_fused(self) -> bool:
        return True

    @cached_property
    def fingerprint(self) -> str:
        """Variant, dimension and the checkpoint's SHA-256 (hashed once, on first use)."""
        return f"visualized-bge:{self.variant or 'custom'}:{self.dim}:{file_sha256(self.checkpoint)[:16]}"

    @property
    def image_size(self) -> int:
        return self.model.vision_config.image_size

    @property
    def max_text_tokens(self) -> int:
        """Longest text-only input, special tokens included; longer texts are truncated."""
        config = self.model.text_config
        # RoBERTa-style models number positions from padding_idx + 1.
        offset = config.pad_token_id + 1 if config.model_type in ("roberta", "xlm-roberta") else 0
        return min(self.tokenizer.model_max_length, config.max_position_embeddings - offset)

    @property
    def max_fused_text_tokens(self) -> int:
        """Longest text in a fused input: image tokens and text share the position budget."""
        budget = self.model.text_config.max_position_embeddings - self.model.num_image_tokens
        return min(self.tokenizer.model_max_length, budget)

    # -- encoding --------------------------------------------------------------------------------

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Images to the ``(n, 3, size, size)`` float32 tensor the vision tower reads."""
        return torch.stack([preprocess(image, self.image_size) for image in images])

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        texts = as_texts(texts)
        return self._run(
            texts,
            lambda batch: self.model.embed_text(**self._token_inputs([texts[i] for i in batch], self.max_text_tokens)),
        )

    def encode_image(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Image-only embeddings: the reference defines them as fused with an empty text."""
        return self.encode_fused(images, [""] * len(images))

    def encode_fused(self, images: Sequence[ImageInput], texts: Sequence[str]) -> np.ndarray:
        """One vector per (image, text) pair."""
        texts = check_pairs(images, texts)

        def run(batch: list[int]) -> torch.Tensor:
            tokens = self._token_inputs([texts[i] for i in batch], self.max_fused_text_tokens)
            return self.model.embed_fused(self._pixels(images, batch), **tokens)

        return self._run(texts, run)

    def encode_fused_and_image(
        self, images: Sequence[ImageInput], texts: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fused and image-only vectors of each pair, from one pass of the vision tower."""
        texts = check_pairs(images, texts)
        empty = self._token_inputs([""], self.max_fused_text_tokens)

        def run(batch: list[int]) -> torch.Tensor:
            image_tokens = self.model.image_tokens(self._pixels(images, batch))
            tokens = self._token_inputs([texts[i] for i in batch], self.max_fused_text_tokens)
            fused = self.model.embed_fused(None, **tokens, image_tokens=image_tokens)
            blank = {k: v.expand(len(batch), -1) for k, v in empty.items()}
            return torch.cat((fused, self.model.embed_fused(None, **blank, image_tokens=image_tokens)), dim=1)

        both = self._run(texts, run, width=2 * self.dim)
        return both[:, : self.dim], both[:, self.dim :]

    def _pixels(self, images: Sequence[ImageInput], batch: list[int]) -> torch.Tensor:
        return self.preprocess([images[i] for i in batch]).to(self.device, DTYPES[self.dtype])

    def _token_inputs(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        tokens = self.tokenize(texts, max_length)
        return {"input_ids": tokens["input_ids"].to(self.device), "attention_mask": tokens["attention_mask"].to(self.device)}

    def _run(self, texts: list[str], embed: Callable[[list[int]], torch.Tensor], width: int | None = None) -> np.ndarray:
        return embed_in_batches(len(texts), self.batch_size, width or self.dim, embed, texts)
