"""The LlamaIndex adapter gives the same vectors as the encoder, through LlamaIndex's own entry points."""

from __future__ import annotations

import base64
from io import BytesIO

import numpy as np
import pytest
from llama_index.core.indices.multi_modal import MultiModalVectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.schema import ImageNode, TextNode

from rag.embeddings.llama_index import FusedEmbeddingTransform, VisualizedBGEEmbedding
from tests.conftest import parity_dir

IMAGES = sorted((parity_dir("base") / "images").iterdir())


@pytest.fixture(scope="module")
def embed(tiny_base) -> VisualizedBGEEmbedding:
    return VisualizedBGEEmbedding(encoder=tiny_base, embed_batch_size=4)


def test_text_query_and_batch(embed, tiny_base):
    texts = ["blue whale", "a cat on a sofa", "bridge at night"]
    np.testing.assert_allclose(embed.get_text_embedding_batch(texts), tiny_base.encode_text(texts), atol=1e-6)
    np.testing.assert_allclose(
        embed.get_query_embedding("blue whale"), tiny_base.encode_text(["blue whale"])[0], atol=1e-6
    )


def test_image_from_path_and_bytes(embed, tiny_base):
    expected = tiny_base.encode_image(IMAGES[:2])
    np.testing.assert_allclose(embed.get_image_embedding_batch([str(p) for p in IMAGES[:2]]), expected, atol=1e-6)
    np.testing.assert_allclose(embed.get_image_embedding(BytesIO(IMAGES[0].read_bytes())), expected[0], atol=1e-6)


def test_fused(embed, tiny_base):
    vector = embed.get_fused_embedding(str(IMAGES[0]), "make it red")
    np.testing.assert_allclose(vector, tiny_base.encode_fused([IMAGES[0]], ["make it red"])[0], atol=1e-6)


async def _async_calls(embed):
    return await embed.aget_query_embedding("blue whale"), await embed.aget_fused_embedding(str(IMAGES[0]), "x")


def test_async_methods_delegate(embed, tiny_base):
    import asyncio

    query, fused = asyncio.run(_async_calls(embed))
    np.testing.assert_allclose(query, tiny_base.encode_text(["blue whale"])[0], atol=1e-6)
    np.testing.assert_allclose(fused, tiny_base.encode_fused([IMAGES[0]], ["x"])[0], atol=1e-6)


def test_ingestion_pipeline_sets_fused_embeddings_on_image_nodes(embed, tiny_base):
    inline = base64.b64encode(IMAGES[1].read_bytes()).decode()
    nodes = [
        ImageNode(text="a bridge", image_path=str(IMAGES[0])),
        ImageNode(text="", image=inline),
        TextNode(text="only words here"),
    ]
    out = IngestionPipeline(transformations=[FusedEmbeddingTransform(embed_model=embed)]).run(nodes=nodes)
    by_text = {n.get_content(): np.array(n.embedding) for n in out}
    np.testing.assert_allclose(by_text["a bridge"], tiny_base.encode_fused([IMAGES[0]], ["a bridge"])[0], atol=1e-6)
    np.testing.assert_allclose(by_text[""], tiny_base.encode_image([IMAGES[1]])[0], atol=1e-6)
    np.testing.assert_allclose(by_text["only words here"], tiny_base.encode_text(["only words here"])[0], atol=1e-6)


def test_remote_only_image_node_is_refused_clearly(embed):
    node = ImageNode(text="x", image_url="https://example.invalid/a.jpg")
    with pytest.raises(ValueError, match="remote image URL"):
        FusedEmbeddingTransform(embed_model=embed)([node])


def test_works_as_models_of_multimodal_vector_store_index(embed):
    nodes = [ImageNode(text=p.stem, image_path=str(p), id_=p.stem) for p in IMAGES] + [
        TextNode(text="The Mid-Hudson Bridge spans the Hudson River.", id_="bridge-text")
    ]
    index = MultiModalVectorStoreIndex(nodes, embed_model=embed, image_embed_model=embed)
    retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=1)
    hits = retriever.text_to_image_retrieve("cir_query")
    assert len(hits) == 1 and hits[0].node.node_id in {p.stem for p in IMAGES}
    image_hits = retriever.image_to_image_retrieve(str(IMAGES[2]))
    assert image_hits[0].node.node_id == IMAGES[2].stem  # an image is its own nearest neighbour
