"""The library as Python callers meet it: filters as text, clear refusals, names checked up front, asyncio, exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.milvus import MilvusStore, StoreError
from rag import QueryError, Settings
from rag.retrieval import MultimodalRetriever
from tests.connectors.milvus_corpus import ENCODER, image_item, text_item, unit_vectors

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path):
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", encoder_info=ENCODER) as opened:
        items = [image_item(i, tags=["picture"]) for i in range(3)] + [text_item(i) for i in range(2)]
        opened.upsert(items, unit_vectors(5, seed=1), unit_vectors(5, seed=2))
        yield opened


def test_filters_written_as_text_work_in_the_store(store):
    assert store.count("tags=picture") == 3
    assert store.count({"tags": "picture"}) == 3
    assert len(store.search(unit_vectors(5, seed=1)[0], k=5, filter="modality=text")) == 2
    assert store.delete(filter="tags=picture") == 3
    assert store.count() == 2


def test_list_collections_lists_the_collections(store):
    assert store.list_collections() == ["kb"]


def test_collection_names_are_checked_before_anything_opens(tmp_path):
    with pytest.raises(ValidationError, match="not one Milvus accepts"):
        Settings(collection="my-docs")
    with pytest.raises(StoreError, match="start with a letter or _"):
        MilvusStore.open(tmp_path / "db" / "milvus.db", "2nd docs", encoder_info=ENCODER)
    assert not (tmp_path / "db").exists()


def test_an_unknown_mode_lists_the_valid_ones(store, tiny_base):
    with pytest.raises(QueryError, match="unknown mode 'telepathy'; the modes are text-to-any, .*composed-to-text"):
        MultimodalRetriever(store, tiny_base, mode="telepathy")


def test_encode_image_refuses_one_path_as_encode_text_refuses_one_string(tiny_base, tmp_path):
    with pytest.raises(TypeError, match="list of texts"):
        tiny_base.encode_text("quokka")
    with pytest.raises(TypeError, match="list of images"):
        tiny_base.encode_image(str(tmp_path / "x.png"))


def test_a_second_asyncio_run_works(tmp_path, tiny_base):
    from llama_index.core.schema import QueryBundle

    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", encoder_info=__import__(
        "connectors.milvus", fromlist=["EncoderInfo"]).EncoderInfo.of(tiny_base)) as opened:  # fmt: skip
        opened.upsert([text_item(0)], tiny_base.encode_text([text_item(0).text]))
        retriever = MultimodalRetriever(opened, tiny_base, top_k=1)
        first = asyncio.run(retriever.aretrieve(QueryBundle("a note")))
        second = asyncio.run(retriever.aretrieve(QueryBundle("a note")))
    assert [hit.node.node_id for hit in first] == [hit.node.node_id for hit in second] == [text_item(0).id]


@pytest.mark.slow
def test_no_traceback_at_exit_with_torch_and_llama_index_loaded(tmp_path):
    script = textwrap.dedent(
        f"""
        import torch, llama_index.core
        from connectors.milvus import MilvusStore
        from tests.connectors.milvus_corpus import ENCODER
        kept = MilvusStore.open({str(tmp_path / "db" / "milvus.db")!r}, "kb", encoder_info=ENCODER)
        closed = MilvusStore.open({str(tmp_path / "db" / "milvus.db")!r}, "kb", encoder_info=ENCODER)
        closed.close()
        print("opened", kept.count())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "opened 0", done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
