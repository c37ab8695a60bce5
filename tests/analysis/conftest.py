"""A Milvus Lite collection of the sample corpus, embedded by the tiny Visualized-BGE, shared by the analysis tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"


@pytest.fixture(scope="session")
def corpus_db(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> str:
    """The Lite file holding collection ``corpus`` (the 7 sample items); closed again, so others may open it."""
    root = tmp_path_factory.mktemp("analysis-store")
    db = str(root / "milvus.db")
    with MilvusStore.open(db, "corpus", encoder_info=EncoderInfo.of(tiny_base)) as store:
        report = ingest(open_sources([CORPUS], cache_dir=root / "cache"), tiny_base, store)
        store.flush()
    assert report.added == 7
    return db


@pytest.fixture
def corpus_store(corpus_db: str) -> Iterator[MilvusStore]:
    with MilvusStore.open(corpus_db, "corpus", create=False) as store:
        yield store
