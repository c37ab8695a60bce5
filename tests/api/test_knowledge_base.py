"""``KnowledgeBase``: the Python facade ingests as ``rag ingest`` does, and searches, asks, deletes and counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag import KnowledgeBase, OptionError, Settings
from rag.cli import app
from tests.helpers.documents import jpeg, png
from tests.helpers.models import tiny_model_fields


def tiny_settings(tmp_path: Path, collection: str = "kb") -> Settings:
    return Settings(
        **tiny_model_fields(),
        milvus_uri=str(tmp_path / "db" / "milvus.db"),
        data_dir=tmp_path / "data",
        collection=collection,
    )


def corpus(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "quokka.md").write_text("# Quokkas\n\nQuokkas live on Rottnest island.\n\n## Diet\n\nThey eat leaves.\n")
    words = " ".join(f"Sentence {i} is about wombats digging burrows under the dry ground." for i in range(120))
    (root / "notes.txt").write_text(words)
    (root / "red.png").write_bytes(png((200, 0, 0)))
    (root / "red.txt").write_text("a red square")
    (root / "sub").mkdir()
    (root / "sub" / "blue.jpg").write_bytes(jpeg((0, 0, 200)))
    return root


def rows(kb: KnowledgeBase) -> list[tuple[str, ...]]:
    return sorted(
        (item.id, item.name, item.text, item.ref_doc_id, item.content_hash, item.modality.value)
        for item, _, _ in kb.store.iter_vectors()
    )


@pytest.mark.slow
def test_knowledge_base_and_rag_ingest_store_the_same_items(tmp_path):
    folder = corpus(tmp_path / "corpus")
    settings = tiny_settings(tmp_path, "cli")
    env = {name: None for name in os.environ if name.startswith("RAG_")}
    env.update(
        RAG_WEIGHTS=settings.weights,
        RAG_TEXT_MODEL=settings.text_model,
        RAG_VISION_CONFIG=settings.vision_config,
        RAG_MILVUS_URI=settings.milvus_uri,
        RAG_DATA_DIR=str(settings.data_dir),
    )
    result = CliRunner().invoke(app, ["ingest", str(folder), "-c", "cli", "--json"], env=env)
    assert result.exit_code == 0, result.output  # the JPEG without a caption is kept, with a warning
    with KnowledgeBase(settings=settings) as cli_kb, KnowledgeBase("kb", settings=settings) as kb:
        report = kb.ingest(folder)
        assert report.added == cli_kb.count() > 5  # the long text is chunked to the encoder's window
        assert rows(kb) == rows(cli_kb)


def test_ingest_search_ask_delete_count_drop(tmp_path):
    from llama_index.core import Document
    from llama_index.core.schema import NodeWithScore

    folder = corpus(tmp_path / "corpus")
    with KnowledgeBase(settings=tiny_settings(tmp_path)) as kb:
        report = kb.ingest([folder, Document(text="numbats eat termites", doc_id="numbat")])
        total = kb.count()
        assert report.added == total and kb.count("source=numbat") == 1
        hits = kb.search("quokkas on an island", similarity_top_k=2)
        assert len(hits) == 2 and all(isinstance(hit, NodeWithScore) for hit in hits)
        assert len(kb.search(image=str(folder / "red.png"), top_k=1, filter={"modality": "image+text"})) == 1
        pictures = kb.search("red", top_k=10, filter="modality=image+text")
        assert {hit.node.metadata["name"] for hit in pictures} == {"red.png"}
        with pytest.raises(OptionError, match="mode"):
            kb.search("x", mode="no-such-mode")
        answer = kb.ask("what do quokkas eat?", top_k=2)  # no LLM configured: the evidence, ranked
        assert len(answer.citations) == 2
        assert kb.delete("source=quokka.md") == 2
        assert kb.delete({"source": "quokka.md"}) == 0
        assert kb.count() == total - 2
        with pytest.raises(ValueError, match="empty filter"):
            kb.delete({})
        kb.drop()
    with KnowledgeBase(settings=tiny_settings(tmp_path)) as again:
        with pytest.raises(Exception, match="no collection 'kb'"):
            again.count()
