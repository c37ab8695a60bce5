"""The public Visualized-BGE encoder: checkpoint, tokenizer and preprocessing behind one object."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from rag.runtime import Runtime
from rag.settings import Settings

from ..base import ImageInput
from ..compiled import BucketedCompile
from ..configured import DEFAULT_WEIGHTS, runtime_from_settings, settings_with
from ..inputs import (
    ImageLoadError,
    PixelBatcher,
    PreparedImage,
    as_images,
    as_texts,
    check_pairs,
    run_batches,
    stack_on_host,
)
from ..preprocess import Preprocessor
from ..text_window import TextWindow, window_of
from ..transformers_encoder import _pixels
from .configuration import VARIANTS, Variant, VisionConfig
from .loading import CheckpointError, build_model, checkpoint_sha256, load_weights, resolve_checkpoint
from .modeling import VisualizedBGEModel
from .preprocessing import NORMALISATION, VisualizedBGETransform

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
        runtime: Runtime,
    ):
        self.runtime = runtime
        self.device = torch.device(runtime.device)
        self.model = model.to(device=self.device, dtype=runtime.torch_dtype).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.variant = variant
        self._transform = VisualizedBGETransform(self.model.vision_config.image_size)
        self.preprocessor = Preprocessor(self._transform, runtime.workers, processes=runtime.processes)
        self._batcher = PixelBatcher(self.device, runtime.torch_dtype, NORMALISATION)
        self._compiled: dict[str, BucketedCompile] = {}

    @classmethod
    def from_pretrained(
        cls,
        weights: str | os.PathLike[str] | None = None,
        text_model: str | os.PathLike[str] | None = None,
        *,
        vision_config: VisionConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
        runtime: Runtime | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        compile: bool | str | None = None,
        preprocess: str | None = None,
        settings: Settings | None = None,
    ) -> VisualizedBGE:
        """Load a checkpoint.

        ``weights`` is a local ``.pth`` file or a variant name (``"bge-visualized-base-en-v1.5"``,
        ``"bge-visualized-m3"``) fetched from the hub. ``text_model`` (folder or hub id) supplies the
        text encoder's config and tokenizer; ``vision_config`` the vision tower's hyper-parameters.
        Both default by variant. ``runtime`` (see ``rag.runtime``), or else ``device``, ``dtype``,
        ``batch_size``, ``workers``, ``compile`` and ``preprocess``, say where and how it runs; ``"auto"`` picks the
        fastest this machine offers (a GPU in bfloat16 or float16, else the CPU in bfloat16 where it
        is native, float32 elsewhere).

        What is not given comes from ``settings`` (default ``Settings()``, the CLI's ``RAG_*`` environment:
        ``RAG_WEIGHTS``, ``RAG_TEXT_MODEL``, ``RAG_VISION_CONFIG``, ``RAG_DEVICE``, ...), then from the defaults
        (the base variant, on the fastest device); arguments given win.
        """
        settings = settings_with(
            settings,
            text_model=text_model,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            workers=workers,
            compile=compile,
            preprocess=preprocess,
        )
        runtime = runtime or runtime_from_settings(settings)
        weights = weights if weights is not None else settings.weights or DEFAULT_WEIGHTS["visualized-bge"]
        text_model = settings.text_model
        vision_config = vision_config if vision_config is not None else settings.vision_config
        checkpoint, variant = _checkpoint(weights, settings)
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
        model = build_model(text_config, vision)
        load_weights(model, checkpoint, device=runtime.device, dtype=runtime.torch_dtype)
        logger.info("loaded %s on %s", checkpoint, runtime.describe())
        return cls(model, tokenizer, checkpoint=checkpoint, variant=variant.name if variant else None, runtime=runtime)

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
        """Variant, dimension and the checkpoint's SHA-256: the same on every device and dtype."""
        return f"visualized-bge:{self.variant or 'custom'}:{self.dim}:{checkpoint_sha256(self.checkpoint)[:16]}"

    @property
    def image_size(self) -> int:
        return self.model.vision_config.image_size

    @property
    def image_transform(self) -> VisualizedBGETransform:
        return self._transform

    @property
    def max_text_tokens(self) -> int:
        """Longest text-only input, special tokens included; longer texts are truncated."""
        config = self.model.text_config
        # RoBERTa-style models number positions from padding_idx + 1.
        offset = config.pad_token_id + 1 if config.model_type in ("roberta", "xlm-roberta") else 0
        return min(self.tokenizer.model_max_length, config.max_position_embeddings - offset)

    @cached_property
    def text_window(self) -> TextWindow:
        return window_of(self.tokenizer, self.max_text_tokens)

    @property
    def max_fused_text_tokens(self) -> int:
        """Longest text in a fused input: image tokens and text share the position budget."""
        budget = self.model.text_config.max_position_embeddings - self.model.num_image_tokens
        return min(self.tokenizer.model_max_length, budget)

    # -- encoding --------------------------------------------------------------------------------

    def prepare(self, images: Sequence[ImageInput]) -> Iterator[PreparedImage | ImageLoadError]:
        """Each image decoded and transformed on the worker pool, in order; an ``ImageLoadError`` value per bad one."""
        return self.preprocessor.map(images)

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Images to the ``(n, 3, size, size)`` float32 tensor the vision tower reads (on the CPU)."""
        return stack_on_host(self.prepare(images), (3, self.image_size, self.image_size), NORMALISATION)

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        texts = as_texts(texts)

        def run(batch: list[int], _: torch.Tensor | None) -> torch.Tensor:
            ids, mask = self._tokens([texts[i] for i in batch], self.max_text_tokens)
            return self._call("text", self.model.embed_text, ids, mask)

        return run_batches(self.runtime, len(texts), self.dim, run, texts=texts)

    def encode_image(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Image-only embeddings: the reference defines them as fused with an empty text."""
        return self.encode_fused(as_images(images), [""] * len(images))

    def encode_fused(self, images: Sequence[ImageInput], texts: Sequence[str]) -> np.ndarray:
        """One vector per (image, text) pair."""
        texts = check_pairs(images, texts)

        def run(batch: list[int], pixels: torch.Tensor | None) -> torch.Tensor:
            ids, mask = self._tokens([texts[i] for i in batch], self.max_fused_text_tokens)
            return self._call("fused", self.model.embed_fused, _pixels(pixels), ids, mask)

        return self._run_images(images, texts, run, self.dim)

    def encode_fused_and_image(
        self, images: Sequence[ImageInput], texts: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fused and image-only vectors of each pair, from one pass of the vision tower."""
        texts = check_pairs(images, texts)
        blank_ids, blank_mask = self._tokens([""], self.max_fused_text_tokens)

        def run(batch: list[int], pixels: torch.Tensor | None) -> torch.Tensor:
            ids, mask = self._tokens([texts[i] for i in batch], self.max_fused_text_tokens)
            rows = (len(batch), -1)
            return self._call(
                "fused_and_image",
                self.model.embed_fused_and_image,
                _pixels(pixels),
                ids,
                mask,
                blank_ids.expand(rows),
                blank_mask.expand(rows),
            )

        both = self._run_images(images, texts, run, 2 * self.dim)
        return both[:, : self.dim], both[:, self.dim :]

    def close(self) -> None:
        """Stop the preprocessing workers (they also stop with the process)."""
        self.preprocessor.close()

    # -- internals ---------------------------------------------------------------------------------

    def _run_images(
        self, images: Sequence[ImageInput], texts: list[str], run: Callable[..., torch.Tensor], width: int
    ) -> np.ndarray:
        return run_batches(
            self.runtime,
            len(texts),
            width,
            run,
            texts=texts,
            images=images,
            preprocessor=self.preprocessor,
            batcher=self._batcher,
        )

    def _tokens(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenize(texts, max_length)
        return tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)

    def _call(self, name: str, function: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        """``function(*inputs)``, through ``torch.compile`` on bucketed shapes when the runtime asks for it."""
        if not self.runtime.compile:
            return function(*inputs)
        if name not in self._compiled:
            self._compiled[name] = BucketedCompile(
                function,
                self.device,
                pad_token_id=self.tokenizer.pad_token_id or 0,
                max_batch=self.runtime.batch_size,
                max_tokens=self.max_text_tokens if name == "text" else self.max_fused_text_tokens,
            )
        return self._compiled[name](*inputs)


def _checkpoint(weights: str | os.PathLike[str], settings: Settings) -> tuple[Path, Variant | None]:
    """The checkpoint file ``weights`` names. A variant's name not in the Hugging Face cache, where no hub can be
    reached, is read from ``RAG_WEIGHTS`` when that names a local file: the environment says where it lies."""
    try:
        return resolve_checkpoint(weights)
    except CheckpointError:
        local = Path(settings.weights).expanduser() if settings.weights else None
        if str(weights) not in VARIANTS or local is None or not local.is_file():
            raise
        logger.info("%s is not in the Hugging Face cache: loading RAG_WEIGHTS=%s", weights, local)
        return resolve_checkpoint(local)
