"""LlamaIndex integration: a ``MultiModalEmbedding`` over any of our encoders, and a transform that
gives image nodes their fused image+text embedding (LlamaIndex's own embedding step embeds text only)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from io import BytesIO
from typing import Any

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import BaseNode, ImageNode, ImageType, TransformComponent
from pydantic import Field, PrivateAttr

from .base import Encoder, ImageInput


def _image_input(image: ImageType | ImageInput) -> ImageInput:
    return image.getvalue() if isinstance(image, BytesIO) else image


def node_image(node: BaseNode) -> ImageInput | None:
    """The image an ``ImageNode`` carries (inline base64 or a local path); remote URLs are not fetched here."""
    if not isinstance(node, ImageNode):
        return None
    if node.image is not None or node.image_path is not None:
        return _image_input(node.resolve_image())
    if node.image_url:
        raise ValueError(
            f"node {node.node_id} has only a remote image URL; fetch it first (sources do, with URL fetching enabled)"
        )
    return None


class VisualizedBGEEmbedding(MultiModalEmbedding):
    """Text, image and fused image+text embeddings for LlamaIndex, all in one vector space.

    Pass a loaded ``encoder``, or the settings to load a Visualized-BGE checkpoint on first use.
    Works as ``embed_model`` and ``image_embed_model`` of ``MultiModalVectorStoreIndex``.
    """

    model_name: str | None = Field(  # type: ignore[assignment]  # None: from the settings
        default=None,
        description="Checkpoint path or variant name (see VisualizedBGE); None: RAG_WEIGHTS, else the base variant.",
    )
    text_model: str | None = Field(
        default=None, description="Text model folder or hub id; None: RAG_TEXT_MODEL, else by variant."
    )
    vision_config: str | None = Field(
        default=None, description="Vision tower config JSON; None: RAG_VISION_CONFIG, else by variant."
    )
    device: str | None = Field(
        default=None, description="torch device: auto, cpu, cuda, cuda:1, mps (see rag.runtime); None: RAG_DEVICE."
    )
    dtype: str | None = Field(
        default=None, description="auto, float32, bfloat16 or float16 (see rag.runtime); None: RAG_DTYPE."
    )

    _encoder: Encoder | None = PrivateAttr(default=None)

    def __init__(self, encoder: Encoder | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "VisualizedBGEEmbedding"

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from .visualized_bge import VisualizedBGE

            self._encoder = VisualizedBGE.from_pretrained(
                self.model_name,
                self.text_model,
                vision_config=self.vision_config,
                device=self.device,
                dtype=self.dtype,
                batch_size=self.embed_batch_size,
            )
        return self._encoder

    # -- text ---------------------------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embeddings([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self.encoder.encode_text(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    # -- images -------------------------------------------------------------------------------

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return self.encoder.encode_image([_image_input(p) for p in img_file_paths]).tolist()

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    # -- image + text ---------------------------------------------------------------------------

    def get_fused_embedding(self, image: ImageType, text: str) -> Embedding:
        """One vector for an image read together with a text (composed queries, captioned items)."""
        return self.get_fused_embedding_batch([image], [text])[0]

    def get_fused_embedding_batch(
        self, images: Sequence[ImageType | ImageInput], texts: Sequence[str]
    ) -> list[Embedding]:
        return self.encoder.encode_fused([_image_input(i) for i in images], list(texts)).tolist()

    async def aget_fused_embedding(self, image: ImageType, text: str) -> Embedding:
        return await asyncio.to_thread(self.get_fused_embedding, image, text)


class FusedEmbeddingTransform(TransformComponent):
    """Sets ``node.embedding``: fused image+text for image nodes, text-only for the rest.

    Put it last in an ``IngestionPipeline`` instead of a text ``embed_model``.
    """

    embed_model: VisualizedBGEEmbedding

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        with_image = [(n, node_image(n)) for n in nodes]
        pairs = [(n, img) for n, img in with_image if img is not None]
        texts_only = [n for n, img in with_image if img is None]
        if pairs:
            vectors = self.embed_model.get_fused_embedding_batch(
                [img for _, img in pairs], [n.get_content() for n, _ in pairs]
            )
            for (node, _), vector in zip(pairs, vectors):
                node.embedding = vector
        if texts_only:
            vectors = self.embed_model.get_text_embedding_batch([n.get_content() for n in texts_only])
            for node, vector in zip(texts_only, vectors):
                node.embedding = vector
        return nodes
