"""LlamaIndex nodes and queries on our collections: nodes stored as they were split, image queries through the
stock retriever, and embeddings of another model refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag import EncoderMismatchError, KnowledgeBase, RagError, VisualizedBGEEmbedding
from rag.embeddings.visualized_bge import VisualizedBGE
from rag.items import Severity, SourceErrorKind
from rag.retrieval.modes import QueryError
from tests.api.test_knowledge_base import tiny_settings
from tests.helpers.documents import png

WOMBATS = " ".join(f"Sentence {i} is about wombats digging burrows under the dry ground." for i in range(40))


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lite")


@pytest.fixture
def kb(lite: Path, tiny_base: VisualizedBGE, request: pytest.FixtureRequest) -> Iterator[KnowledgeBase]:
    """A collection of its own for each test, in one Milvus Lite folder (its server started once)."""
    with KnowledgeBase(request.node.name[5:40], settings=tiny_settings(lite)) as opened:
        opened._encoder = tiny_base
        yield opened


def stored(kb: KnowledgeBase) -> dict[str, tuple[str, str]]:
    return {item.name: (item.text, item.ref_doc_id) for item, _, _ in kb.store.iter_vectors()}


def test_nodes_are_stored_as_split_named_apart_and_kept_when_split_again(kb: KnowledgeBase, tmp_path: Path) -> None:
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import TextNode

    document = Document(text=WOMBATS, doc_id="wombats", metadata={"file_path": str(tmp_path / "wombats.txt")})
    splitter = SentenceSplitter(chunk_size=120, chunk_overlap=0, tokenizer=str.split)  # words: no tiktoken download
    nodes = splitter.get_nodes_from_documents([document])
    assert len(nodes) > 2
    report = kb.ingest([*nodes, TextNode(text="Numbats eat termites.", id_="numbat")])
    names = ["wombats.txt"] + [f"wombats.txt#chunk={n}" for n in range(2, len(nodes) + 1)]
    assert stored(kb) == {
        **{name: (node.text, "wombats") for name, node in zip(names, nodes)},  # as split, not split again
        "numbat": ("Numbats eat termites.", "numbat"),
    }
    over = [p for p in report.problems if p.kind is SourceErrorKind.TEXT_OVER_WINDOW]
    assert over and len(over) == len(report.problems) and all(p.severity is Severity.WARNING for p in over)
    again = kb.ingest(splitter.get_nodes_from_documents([document]))  # new node ids, the same chunks
    assert (again.unchanged, again.encoded, again.removed) == (len(nodes), 0, 0)
    assert kb.count() == len(nodes) + 1  # the other document untouched


def test_an_image_query_through_the_stock_retriever(
    kb: KnowledgeBase, embed: VisualizedBGEEmbedding, tmp_path: Path
) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import QueryBundle

    folder = tmp_path / "pictures"
    folder.mkdir()
    for name, colour in (("red", (220, 0, 0)), ("blue", (0, 0, 220)), ("green", (0, 200, 0))):
        (folder / f"{name}.png").write_bytes(png(colour))
        (folder / f"{name}.txt").write_text(f"a {name} square")
    red = str(folder / "red.png")
    retriever = VectorStoreIndex.from_vector_store(kb.vector_store, embed_model=embed).as_retriever(similarity_top_k=1)
    kb.ingest(folder)
    with pytest.raises(QueryError, match="image_to_image_retrieve") as refused:
        retriever.retrieve(QueryBundle("", image_path=red))  # LlamaIndex drops the image: never the empty text
    assert isinstance(refused.value, RagError) and "get_image_embedding" in str(refused.value)
    by_image = retriever.retrieve(QueryBundle("", image_path=red, embedding=embed.get_image_embedding(red)))
    assert [hit.node.node_id for hit in by_image] == [hit.node.node_id for hit in kb.search(image=red, top_k=1)]


def test_embeddings_of_another_model_of_the_same_width_are_refused(
    kb: KnowledgeBase, embed: VisualizedBGEEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_index.core.schema import MetadataMode, TextNode

    from rag.knowledge import vector_store

    monkeypatch.setattr(vector_store, "_WRITE", 64)  # a write of 64, not 512: two writes from 70 nodes

    store = kb.vector_store
    ours = TextNode(text="Quokkas live on Rottnest island.", metadata={"topic": "quokkas"})
    ours.embedding = embed.get_text_embedding(ours.get_content(metadata_mode=MetadataMode.EMBED))
    bare = TextNode(text="Wombats dig burrows.", excluded_embed_metadata_keys=["topic"], metadata={"topic": "x"})
    bare.embedding = embed.get_text_embedding("Wombats dig burrows.")
    assert len(store.add([ours, bare])) == 2
    other = np.random.default_rng(7).standard_normal(kb.store.encoder.dim)  # another model's vector, same width
    numbat = embed.get_text_embedding("Numbats eat termites.")
    later = [TextNode(text="Numbats eat termites.", embedding=numbat) for _ in range(70)]  # the second write...
    later[64].embedding = (other / np.linalg.norm(other)).tolist()  # ...starts with another model's vector
    with pytest.raises(EncoderMismatchError, match="not the collection encoder's"):
        store.add(later)
    assert kb.count() == 2  # nothing written
    later[64].embedding = numbat
    assert len(store.add(later)) == 70 and kb.count() == 72  # two writes, each checked
