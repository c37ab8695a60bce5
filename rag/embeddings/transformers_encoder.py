"""Common ground of the encoders built on a transformers checkpoint (CLIP, BridgeTower).

One folder or hub id holds everything: ``config.json``, the weights, the tokenizer and the image
processor's ``preprocessor_config.json``, all read by ``from_pretrained`` so they cannot drift apart.
Images go through the model's own image processor on its PIL backend (no torchvision needed, and
the same pixels whether torchvision is installed or not).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rag.runtime import Runtime
from rag.settings import Settings

from .base import FusedNotSupportedError, ImageInput
from .configured import DEFAULT_WEIGHTS, runtime_from_settings, settings_with
from .hub import CheckpointError, pretrained_source
from .inputs import (
    ImageLoadError,
    PixelBatcher,
    PreparedImage,
    as_images,
    as_texts,
    check_pairs,
    prepare_image,
    run_batches,
    stack_on_host,
)
from .preprocess import Preprocessor
from .text_window import TextWindow, window_of

logger = logging.getLogger(__name__)

#: Config entries that say how a model was saved or is run, not what it computes.
_VOLATILE_CONFIG_KEYS = frozenset(
    {"transformers_version", "_name_or_path", "_commit_hash", "architectures", "dtype", "torch_dtype"}
)


class TransformersEncoder(ABC):
    """Tokenizer, image processor, device, dtype and batching around a transformers model.

    Subclasses say how a batch of tokens or pixels becomes vectors; every vector returned is
    L2-normalised float32, in input order.
    """

    #: The ``model_type`` in ``config.json`` this encoder reads, also the fingerprint prefix.
    model_type: ClassVar[str]
    model_class: ClassVar[type[PreTrainedModel]]

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: Any,
        *,
        name: str,
        runtime: Runtime,
    ):
        # Hashed before the dtype cast, so float32 and bfloat16 runs of one checkpoint share a fingerprint.
        self._weights_hash = weights_hash(model)
        self.runtime = runtime
        self.device = torch.device(runtime.device)
        # transformers types PreTrainedModel.to as a wrapped method, which mypy cannot call.
        self.model = model.to(device=self.device, dtype=runtime.torch_dtype).eval().requires_grad_(False)  # type: ignore[call-arg]
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self._name = name
        self._transform = ProcessorTransform(image_processor, _processed_shape(image_processor))
        self.preprocessor = Preprocessor(self._transform, runtime.workers, processes=runtime.processes)
        self._batcher = PixelBatcher(self.device, runtime.torch_dtype)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        *,
        runtime: Runtime | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        settings: Settings | None = None,
    ) -> TransformersEncoder:
        """Load a local model folder or a hub id (from the Hugging Face cache first; the hub only if reachable).

        ``runtime``, or else ``device``, ``dtype``, ``batch_size`` and ``workers``, say where it runs
        (see ``rag.runtime``).
        What is not given comes from ``settings`` (default ``Settings()``: ``RAG_DEVICE``, ``RAG_DTYPE``, ...; the model
        from ``RAG_WEIGHTS`` when ``RAG_ENCODER`` names this encoder), then from the defaults; arguments given win.
        """
        settings = settings_with(settings, device=device, dtype=dtype, batch_size=batch_size, workers=workers)
        runtime = runtime or runtime_from_settings(settings)
        if name_or_path is None:
            configured = settings.weights if settings.encoder == cls.model_type else None
            name_or_path = configured or DEFAULT_WEIGHTS[cls.model_type]
        source, local_only = pretrained_source(name_or_path)
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
            if config.model_type != cls.model_type:
                raise CheckpointError(
                    f"{source} holds a {config.model_type!r} model, not {cls.model_type!r}: choose the matching "
                    "encoder (RAG_ENCODER) or another checkpoint"
                )
            loaded: Any = cls.model_class.from_pretrained(
                source, local_files_only=local_only, dtype=torch.float32, output_loading_info=True
            )
            model, info = loaded  # with output_loading_info, (model, {missing_keys, mismatched_keys, ...})
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only, backend="pil")
        except (OSError, ValueError) as e:
            raise CheckpointError(
                f"cannot load {cls.model_type} model from {source!r}: {e}. Pass a folder with config.json, "
                "the weights, the tokenizer files and preprocessor_config.json (RAG_WEIGHTS)."
            ) from e
        missing = sorted(info["missing_keys"]) + sorted(info["mismatched_keys"])
        if missing:
            raise CheckpointError(
                f"{source} lacks weights {cls.model_class.__name__} needs ({', '.join(map(str, missing[:5]))}"
                f"{' …' if len(missing) > 5 else ''}); is it a checkpoint of this model head?"
            )
        logger.info("loaded %s model %s (%s parameters)", cls.model_type, source, f"{model.num_parameters():,}")
        return cls(model, tokenizer, processor, name=str(name_or_path), runtime=runtime)

    # -- what the rest of the system sees --------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def fingerprint(self) -> str:
        """Model type, dimension and a hash of the config and every weight tensor."""
        return f"{self.model_type}:{self.dim}:{self._weights_hash}"

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    def supports_fused(self) -> bool:
        return False

    @property
    def logit_scale(self) -> float:
        """The temperature the model was trained with: image-text cosines times this are its logits."""
        return float(self.model.logit_scale.detach().exp())

    @property
    @abstractmethod
    def max_text_tokens(self) -> int:
        """Longest text, special tokens included; longer texts are truncated."""

    @cached_property
    def text_window(self) -> TextWindow:
        return window_of(self.tokenizer, self.max_text_tokens)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The ``(3, H, W)`` shape of one preprocessed image."""
        return self._transform.shape

    @property
    def image_transform(self) -> ProcessorTransform:
        return self._transform

    # -- encoding --------------------------------------------------------------------------------

    def prepare(self, images: Sequence[ImageInput]) -> Iterator[PreparedImage | ImageLoadError]:
        """Each image through the model's image processor on the worker pool, in order; an error value per bad one."""
        return self.preprocessor.map(images)

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Images to the ``(n, 3, H, W)`` float32 tensor the vision tower reads (on the CPU)."""
        return stack_on_host(self.prepare(images), self.image_shape)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        texts = as_texts(texts)
        return self._run(len(texts), lambda batch, _: self._embed_text(self._tokens([texts[i] for i in batch])), texts)

    def encode_image(self, images: Sequence[ImageInput]) -> np.ndarray:
        images = as_images(images)
        return self._run(len(images), lambda batch, pixels: self._embed_image(_pixels(pixels)), images=images)

    def encode_fused(self, images: Sequence[ImageInput], texts: Sequence[str]) -> np.ndarray:
        raise FusedNotSupportedError(
            f"{self.name} ({self.model_type}) has no joint image+text embedding: embed the image and the text "
            "separately (encode_image / encode_text), or use an encoder with one (RAG_ENCODER=visualized-bge "
            "or bridgetower)"
        )

    def encode_fused_and_image(
        self, images: Sequence[ImageInput], texts: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Without a fused embedding an item is stored with its image vector in both fields.

        Text queries then search the images, as these models were trained to; the caption stays
        searchable through the store's full-text index.
        """
        check_pairs(images, texts)
        image = self.encode_image(images)
        return image, image.copy()

    def close(self) -> None:
        """Stop the preprocessing workers (they also stop with the process)."""
        self.preprocessor.close()

    @abstractmethod
    def _embed_text(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Text vectors of a tokenised batch (``_run`` normalises them)."""

    @abstractmethod
    def _embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image vectors of a batch of preprocessed pixels (``_run`` normalises them)."""

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        return {
            "input_ids": tokens["input_ids"].to(self.device),
            "attention_mask": tokens["attention_mask"].to(self.device),
        }

    def _run(
        self,
        n: int,
        embed: Callable[[list[int], torch.Tensor | None], torch.Tensor],
        texts: Sequence[str] | None = None,
        width: int | None = None,
        images: Sequence[ImageInput] | None = None,
    ) -> np.ndarray:
        """Embed in batches, normalising each ``dim``-wide part of ``embed``'s rows; input order kept."""

        def normalised(batch: list[int], pixels: torch.Tensor | None) -> torch.Tensor:
            parts = embed(batch, pixels).float().split(self.dim, dim=1)
            return torch.cat([torch.nn.functional.normalize(p, dim=-1) for p in parts], dim=1)

        return run_batches(
            self.runtime,
            n,
            width or self.dim,
            normalised,
            texts=texts,
            images=images,
            preprocessor=self.preprocessor,
            batcher=self._batcher,
        )


@dataclass(frozen=True)
class ProcessorTransform:
    """A transformers image processor (PIL backend) as a picklable per-image transform: float32 pixels."""

    image_processor: Any
    shape: tuple[int, int, int]

    def __call__(self, image: ImageInput) -> PreparedImage:
        return prepare_image(image, self.shape, self._pixels)

    def _pixels(self, decoded: Image.Image) -> np.ndarray:
        processed = self.image_processor(images=[decoded], return_tensors="np", do_convert_rgb=True)
        return np.asarray(processed["pixel_values"][0], dtype=np.float32)


def _processed_shape(image_processor: Any) -> tuple[int, int, int]:
    probe = image_processor(images=[Image.new("RGB", (64, 64))], return_tensors="np", do_convert_rgb=True)
    return tuple(probe["pixel_values"][0].shape)


def _pixels(pixels: torch.Tensor | None) -> torch.Tensor:
    """The batch's pixels, which an image batch always has."""
    if pixels is None:
        raise ValueError("an image batch came without its pixels")
    return pixels


def weights_hash(model: PreTrainedModel) -> str:
    """A hash of the model's config (save-time entries left out) and of its weights as float32."""
    digest = hashlib.sha256()
    digest.update(json.dumps(_stable_config(model.config.to_dict()), sort_keys=True, default=str).encode())
    for key, tensor in sorted(model.state_dict().items()):
        values = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{tuple(values.shape)}".encode())
        digest.update(values.numpy())
    return digest.hexdigest()[:16]


def _stable_config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _stable_config(value) if isinstance(value, dict) else value
        for key, value in config.items()
        if key not in _VOLATILE_CONFIG_KEYS
    }
