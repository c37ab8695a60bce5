"""The example documents, ingested whole with the tiny encoder: a distinctive phrase of each file brings that file
back in the top 3 of a default-mode search that weighs words (the tiny model's dense scores are noise), and answers
cite the chunks by name and anchor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.cli import app
from rag.ingest import ingest
from rag.retrieval import Mode, MultimodalRetriever, evidence
from tests.helpers.models import process_env

DOCUMENTS = Path(__file__).resolve().parents[2] / "examples" / "documents"
PHRASES = {
    "maintenance-log.txt": "turntable bearing was greased",
    "glossary.md": "crushed stone bed that holds the sleepers",
    "railway-guide.md": "where the accessible carriage stops",
    "depot-handbook.docx": "the red fault book by the shed door",
    "quarterly-review.pptx": "passenger numbers rose by a fifth",
    "bridge-inspection.pdf": "scour around the second pier",
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> str:
    root = tmp_path_factory.mktemp("documents")
    db = str(root / "milvus.db")
    with MilvusStore.open(db, "documents", encoder_info=EncoderInfo.of(tiny_base)) as store:
        report = ingest(open_sources([DOCUMENTS], cache_dir=root / "cache"), tiny_base, store)
    assert report.added > len(PHRASES) and not report.skipped, report.summary()
    return db


@pytest.fixture(scope="module")
def store(db: str) -> Iterator[MilvusStore]:
    with MilvusStore.open(db, "documents", create=False) as opened:
        yield opened


@pytest.mark.parametrize("words", [{"blend": "bm25=1"}, {"hybrid": True}], ids=["bm25", "hybrid"])
def test_a_phrase_of_each_file_brings_it_back_in_the_top_3(store, tiny_base, words) -> None:
    retriever = MultimodalRetriever(store, tiny_base, top_k=3, **words)
    for document, phrase in PHRASES.items():
        assert retriever.resolve_mode(_bundle(phrase)) is Mode.TEXT_TO_ANY
        found = [result.document for result in evidence(retriever.retrieve(phrase))]
        assert document in found, (phrase, found)


def test_the_cli_finds_a_chunk_by_its_words_and_shows_its_name(db) -> None:
    env = process_env(
        RAG_MILVUS_URI=db,
        RAG_COLLECTION="documents",
    )
    args = ["search", "-t", PHRASES["depot-handbook.docx"], "--blend", "bm25=1", "-k", "3", "--json"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)["results"][0]
    assert (top["name"], top["document"], top["anchor"]) == (
        "depot-handbook.docx#tracking-faults",
        "depot-handbook.docx",
        "#tracking-faults",
    )
    assert top["metadata"]["modality"] == "text" and "red fault book" in top["text"]
    texts = CliRunner().invoke(app, [*args[:-1], "-f", "modality=text", "--json"], env=env)
    assert {r["metadata"]["modality"] for r in json.loads(texts.stdout)["results"]} == {"text"}


def _bundle(text: str):
    from llama_index.core.schema import QueryBundle

    return QueryBundle(text)
