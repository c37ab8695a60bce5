"""Our LlamaIndex vector store: the stock LlamaIndex idioms write and read our collections, and what they write
is what ``rag search`` finds."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from rag import EncoderMismatchError, KnowledgeBase
from rag.cli import app
from tests.helpers.documents import png


def docs():
    from llama_index.core import Document

    return [
        Document(text="Quokkas live on Rottnest island. They are small marsupials.", doc_id="quokka"),
        Document(text="Wombats dig long burrows with their strong claws.", doc_id="wombat"),
    ]


def documents_stored(kb: KnowledgeBase) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item, _, _ in kb.store.iter_vectors():
        counts[item.ref_doc_id] = counts.get(item.ref_doc_id, 0) + 1
    return counts


def test_ingestion_pipeline_writes_items_rag_search_finds(kb, embed, tmp_path):
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    pipeline = IngestionPipeline(transformations=[SentenceSplitter(), embed], vector_store=kb.vector_store)
    nodes = pipeline.run(documents=docs())
    assert documents_stored(kb) == {"quokka": 1, "wombat": 1}
    assert {item.id for item, _, _ in kb.store.iter_vectors()} == {node.node_id for node in nodes}
    settings = kb.settings
    env = {name: None for name in os.environ if name.startswith("RAG_")}
    env.update(RAG_WEIGHTS=settings.weights, RAG_TEXT_MODEL=settings.text_model,
               RAG_VISION_CONFIG=settings.vision_config, RAG_MILVUS_URI=settings.milvus_uri)  # fmt: skip
    kb.close()
    found = CliRunner().invoke(app, ["search", "-c", "kb", "-t", "wombats dig burrows", "--json"], env=env)
    assert found.exit_code == 0, found.output
    results = json.loads(found.stdout)["results"]
    assert results[0]["text"] == "Wombats dig long burrows with their strong claws."


def test_vector_store_index_insert_delete_ref_doc_and_query(kb, embed):
    from llama_index.core import Document, VectorStoreIndex

    index = VectorStoreIndex.from_vector_store(kb.vector_store, embed_model=embed)
    for document in docs():
        index.insert(document)
    index.insert(Document(text="Numbats eat termites.", doc_id="numbat"))
    assert documents_stored(kb) == {"quokka": 1, "wombat": 1, "numbat": 1}
    hits = index.as_retriever(similarity_top_k=2).retrieve("Which animal eats termites?")
    assert len(hits) == 2 and hits[0].node.ref_doc_id == "numbat"
    index.delete_ref_doc("wombat")
    assert documents_stored(kb) == {"quokka": 1, "numbat": 1}


def test_refresh_ref_docs_replaces_only_the_changed_document(kb, embed):
    from llama_index.core import Document, StorageContext, VectorStoreIndex

    context = StorageContext.from_defaults(vector_store=kb.vector_store)
    index = VectorStoreIndex.from_documents(docs(), storage_context=context, embed_model=embed)
    before = {item.ref_doc_id: item.text for item, _, _ in kb.store.iter_vectors()}
    changed = [Document(text="Quokkas smile a lot.", doc_id="quokka"), docs()[1]]
    assert index.refresh_ref_docs(changed) == [True, False]
    after = {item.ref_doc_id: item.text for item, _, _ in kb.store.iter_vectors()}
    assert after == {"quokka": "Quokkas smile a lot.", "wombat": before["wombat"]}


def test_delete_by_the_name_surfaces_show_and_by_node_ids(kb, tmp_path):
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "bugs.md").write_text("# Bugs\n\nBeetles and ants.\n")
    (folder / "plants.md").write_text("# Plants\n\nFerns and mosses.\n")
    kb.ingest(folder)
    store = kb.vector_store
    store.delete("bugs.md")  # the name every surface shows
    assert [item.name for item, _, _ in kb.store.iter_vectors()] == ["plants.md#plants"]
    only = MetadataFilters(filters=[MetadataFilter(key="name", value="nothing", operator=FilterOperator.EQ)])
    store.delete_nodes(filters=only)
    assert kb.count() == 1
    store.delete_nodes(node_ids=[item.id for item, _, _ in kb.store.iter_vectors()])
    assert kb.count() == 0


def test_multimodal_index_writes_pictures_and_searches_them(kb, embed, tmp_path):
    from llama_index.core import StorageContext
    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llama_index.core.schema import ImageDocument

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    red.write_bytes(png((220, 0, 0)))
    blue.write_bytes(png((0, 0, 220)))
    store = kb.vector_store
    context = StorageContext.from_defaults(vector_store=store, image_store=store.image_store)
    index = MultiModalVectorStoreIndex.from_documents(
        [ImageDocument(image_path=str(red), text="a red square"), ImageDocument(image_path=str(blue), text="blue")]
        + docs(),
        storage_context=context,
        embed_model=embed,
        image_embed_model=embed,
    )
    assert kb.count("modality=image+text") == 2 and kb.count() == 4
    pictures = index.as_retriever(image_similarity_top_k=2).image_to_image_retrieve(str(red))
    assert pictures and pictures[0].node.metadata["name"] == "red.png#node=" + pictures[0].node.node_id
    found = kb.search(image=str(red), top_k=1)
    assert found[0].node.node_id == pictures[0].node.node_id


def test_another_embedding_model_is_refused_with_encoder_mismatch(kb, embed):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding

    index = VectorStoreIndex.from_vector_store(kb.vector_store, embed_model=embed)
    index.insert(docs()[0])
    width = kb.store.encoder.dim
    for other in (MockEmbedding(embed_dim=width + 1), MockEmbedding(embed_dim=width)):
        mismatched = VectorStoreIndex.from_vector_store(kb.vector_store, embed_model=other)
        with pytest.raises(EncoderMismatchError):
            mismatched.as_retriever().retrieve("quokkas")
    for other in (MockEmbedding(embed_dim=width + 1), MockEmbedding(embed_dim=width)):
        with pytest.raises(EncoderMismatchError):
            VectorStoreIndex.from_vector_store(kb.vector_store, embed_model=other).insert(docs()[1])
    assert kb.count() == 1
