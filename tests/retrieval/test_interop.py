"""A folder ingested by our pipeline, opened with LlamaIndex's stock MilvusVectorStore and queried through
``VectorStoreIndex.from_vector_store`` with our embedding; our answer stage on top of the stock retriever."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import ImageNode

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.milvus.interop import llama_vector_store
from connectors.sources import open_sources
from rag.answer import AnswerStatus, answer_engine, openai_compatible_llm
from rag.embeddings.llama_index import VisualizedBGEEmbedding
from rag.ingest import ingest
from tests.helpers.llm import FakeLLMServer, Reply, user_parts

from .corpus import CAPTIONS, LIGHTHOUSE, draw

COLLECTION = "folder"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> str:
    root = tmp_path_factory.mktemp("interop")
    folder = root / "corpus"
    for i, caption in enumerate(CAPTIONS + [LIGHTHOUSE]):
        draw(folder / f"picture{i}.png", seed=10 + i)
        (folder / f"picture{i}.txt").write_text(caption, encoding="utf-8")
    db = str(root / "milvus.db")
    with MilvusStore.open(db, COLLECTION, encoder_info=EncoderInfo.of(tiny_base)) as store:
        report = ingest(open_sources([folder], cache_dir=root / "cache"), tiny_base, store)
    assert report.added == 4 and not report.skipped
    return db


@pytest.fixture(scope="module")
def store(db: str) -> Iterator[MilvusStore]:
    # Open for the whole module: Milvus Lite stops when the last of our stores on the file closes.
    with MilvusStore.open(db, COLLECTION, create=False) as opened:
        yield opened


@pytest.fixture(scope="module")
def index(db: str, store: MilvusStore, tiny_base) -> Iterator[VectorStoreIndex]:
    vector_store = llama_vector_store(db, COLLECTION)
    yield VectorStoreIndex.from_vector_store(vector_store, embed_model=VisualizedBGEEmbedding(encoder=tiny_base))
    vector_store.client.close()


def test_stock_index_searches_the_fused_vectors_with_a_text_query(index, store, tiny_base) -> None:
    query = "a bridge over a river at night"
    results = index.as_retriever(similarity_top_k=3).retrieve(query)
    expected = store.search(tiny_base.encode_text([query])[0], field="fused", k=3)
    assert [r.node.node_id for r in results] == [h.id for h in expected]
    assert [r.score for r in results] == pytest.approx([h.score for h in expected], abs=1e-5)
    for result, hit in zip(results, expected):
        node = result.node
        assert isinstance(node, ImageNode)
        assert (node.image_path, node.image_mimetype) == (hit.item.image.uri, "image/png")
        assert node.get_content() == hit.item.text and node.metadata["source"] == hit.item.source


def test_stock_hybrid_query_uses_our_bm25_field(index) -> None:
    results = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=2).retrieve("rocky cliff")
    assert results[0].node.get_content() == LIGHTHOUSE


def test_our_answer_stage_on_the_stock_retriever(index) -> None:
    with FakeLLMServer(Reply("The cliff is in [1].")) as server:
        llm = openai_compatible_llm("vision-test", base_url=server.url, max_retries=0, timeout=5)
        response = answer_engine(index.as_retriever(similarity_top_k=2), llm).query("rocky cliff")
    text, images = user_parts(server.requests[0])
    assert len(images) == 2 and all(n.node.get_content() in text for n in response.source_nodes)
    assert response.status is AnswerStatus.ANSWERED and len(response.cited) == 1
    assert Path(response.cited[0].image).is_file()
