"""The Milvus store on Milvus Lite: writes, reads, searches, filters, encoder records, BM25, LlamaIndex interop."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import ImageNode, QueryBundle, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode
from llama_index.vector_stores.milvus import MilvusVectorStore
from pymilvus import MilvusClient

from connectors.milvus import (
    Blend,
    BlendError,
    CollectionNotFoundError,
    ConnectOptions,
    DatabaseNotFoundError,
    EncoderInfo,
    EncoderMismatchError,
    MilvusStore,
    NotSupportedError,
    StoreError,
    StoreLockedError,
    item_problems,
    list_collections,
    require_collection,
)
from connectors.milvus.interop import llama_vector_store
from connectors.milvus.lite_server import shared_lite
from rag.items import KnowledgeItem
from tests.conftest import database_of
from tests.milvus_server import MilvusLiteServer

from .milvus_corpus import DIM, ENCODER, image_item, text_item, unit_vectors

HOSTILE = [
    '" or 1==1 or "',
    "' or 1==1 or '",
    'quote"inside',
    "back\\slash",
    "trailing\\",
    '\\" or id != "',
    "new\nline\ttab",
    "percent%_under",
    "ünïcödé 😀",
    ") or (1==1",
]


#: A real Milvus to run this contract suite against (``make test-milvus``); without it those runs are skipped.
REAL_MILVUS = "RAG_TEST_MILVUS_URI"


@pytest.fixture(params=["lite", "http", "server", "milvus"])
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where the store under contract lives:

    - ``lite``: a Milvus Lite folder, served by its shared server (the default store);
    - ``http``: a database on the session's standalone ``milvus-lite server``, which the store recognises as Lite;
    - ``server``: the same, with ``RAG_MILVUS_BACKEND=server``, so the store takes a Milvus server's path: Milvus's
      BM25 function and server-side hybrid search;
    - ``milvus``: a database on a real Milvus at ``RAG_TEST_MILVUS_URI`` (``make test-milvus``), skipped without it.
    """
    if request.param == "lite":
        return str(tmp_path / "lite" / "milvus.db")
    if request.param == "milvus":
        uri = os.environ.get(REAL_MILVUS)
        if not uri:
            pytest.skip(f"no real Milvus: set {REAL_MILVUS}=http://host:19530 to run the store contract on one")
        return database_of(uri.rstrip("/"), request.node.nodeid)
    if request.param == "server":
        monkeypatch.setenv("RAG_MILVUS_BACKEND", "server")
    server: MilvusLiteServer = request.getfixturevalue("milvus_server")
    return database_of(server.uri, request.node.nodeid)


@pytest.fixture
def lite_db(tmp_path: Path) -> str:
    return str(tmp_path / "lite" / "milvus.db")


@pytest.fixture
def store(db: str) -> Iterator[MilvusStore]:
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as opened:
        yield opened


def _corpus() -> tuple[list[KnowledgeItem], np.ndarray, np.ndarray]:
    items = [image_item(i, tags=["picture", f"n{i}"], metadata={"rank": i}) for i in range(4)]
    items += [text_item(i, tags=["note"], metadata={"rank": 10 + i}) for i in range(2)]
    return items, unit_vectors(len(items), seed=1), unit_vectors(len(items), seed=2)


def test_open_creates_the_folder_and_records_the_encoder(tmp_path: Path) -> None:
    db = tmp_path / "not" / "yet" / "there.db"
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER.model_dump()) as store:
        stats = store.stats()
        assert store.list_collections() == ["knowledge"]
    assert db.parent.is_dir()
    assert (stats.count, stats.dim, stats.encoder, stats.bm25, stats.backend.value) == (0, DIM, ENCODER, True, "lite")
    assert list_collections(db) == ["knowledge"]


def test_opening_without_create_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for attempt in (
        lambda: MilvusStore.open("rag_data/milvus.db", "knowledge", create=False),
        lambda: list_collections("rag_data/milvus.db"),
        lambda: require_collection("rag_data/milvus.db", "knowledge"),
    ):
        with pytest.raises(DatabaseNotFoundError) as refused:
            attempt()
        message = str(refused.value)
        assert f"no Milvus Lite database at {tmp_path / 'rag_data' / 'milvus.db'}" in message
        assert "rag_data/milvus.db is relative to the current folder" in message
        assert "point uri= (RAG_MILVUS_URI) at an existing one" in message and "--" not in message  # no CLI flag
    assert list(tmp_path.iterdir()) == []
    MilvusStore.open("rag_data/milvus.db", "knowledge", encoder_info=ENCODER).close()
    with pytest.raises(CollectionNotFoundError, match="no collection 'other' at .*; existing: knowledge"):
        require_collection("rag_data/milvus.db", "other")
    require_collection("rag_data/milvus.db", "knowledge")


def test_upsert_then_get_returns_the_same_items(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    items[0] = image_item(0, metadata={"nested": {"a": [1, 2]}, "score": 0.5, "flag": True}, tags=["x", "y"])
    assert store.upsert(items, fused, image) == len(items)
    got = store.get([items[5].id, "missing", items[0].id])
    assert [g.model_dump() for g in got] == [items[5].model_dump(), items[0].model_dump()]
    assert store.count() == len(items)


def test_reupserting_the_same_items_adds_nothing(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    store.upsert(items, fused, image)
    store.upsert(items, fused, image)
    store.flush()
    assert store.upsert([], np.zeros((0, DIM), dtype=np.float32)) == 0
    assert store.count() == len(items)
    assert store.existing_ids([items[1].id, "unknown", items[4].id]) == {items[1].id, items[4].id}


def test_a_changed_item_replaces_the_old_one(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    store.upsert(items, fused, image)
    changed = items[2].model_copy(update={"text": "zebra crossing", "tags": ["new"], "metadata": {"v": 2}})
    store.upsert([changed], unit_vectors(1, seed=9), unit_vectors(1, seed=10))
    assert store.count() == len(items)
    assert store.get([changed.id])[0].model_dump() == changed.model_dump()
    assert [h.id for h in store.text_search("zebra", k=3)] == [changed.id]
    assert store.text_search("picture 2", k=10, filter={"id": changed.id}) == []


def test_delete_by_ids_and_by_filter(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    store.upsert(items, fused, image)
    assert store.delete(ids=[items[0].id, "unknown"]) == 1
    assert store.delete(filter={"tags": "note"}) == 2
    assert store.count() == len(items) - 3
    with pytest.raises(ValueError):
        store.delete(filter={})
    with pytest.raises(ValueError):
        store.delete()
    assert store.count() == len(items) - 3


def test_fused_search_ranks_the_item_itself_first_and_honours_filters(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    store.upsert(items, fused, image)
    hits = store.search(fused[3], k=3)
    assert hits[0].id == items[3].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].item.model_dump() == items[3].model_dump()
    assert hits[0].embedding is None
    filtered = store.search(fused[3], k=10, filter={"tags": "note"})
    assert {h.id for h in filtered} == {items[4].id, items[5].id}


def test_image_search_sees_only_image_vectors(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    store.upsert(items, fused, image)
    hits = store.search(image[1], field="image", k=10, with_vectors=True)
    assert hits[0].id == items[1].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert {h.id for h in hits} == {item.id for item in items[:4]}
    np.testing.assert_allclose(hits[0].image_embedding, image[1], atol=1e-6)
    np.testing.assert_allclose(hits[0].embedding, fused[1], atol=1e-6)
    # A text item's fused vector as query still finds no text item through the image field.
    assert items[4].id not in {h.id for h in store.search(fused[4], field="image", k=10)}
    text_hit = store.search(fused[4], k=1, with_vectors=True)[0]
    assert text_hit.id == items[4].id and text_hit.image_embedding is None


def test_iter_vectors_reads_every_item_with_its_vectors_in_batches(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    store.upsert(items, fused, image)
    rows = {item.id: (item, f, i) for item, f, i in store.iter_vectors(batch_size=4)}
    assert set(rows) == {item.id for item in items}
    for n, item in enumerate(items):
        stored, stored_fused, stored_image = rows[item.id]
        assert stored.model_dump() == item.model_dump()
        np.testing.assert_allclose(stored_fused, fused[n], atol=1e-6)
        if item.image is None:
            assert stored_image is None
        else:
            np.testing.assert_allclose(stored_image, image[n], atol=1e-6)
    assert {item.id for item, _, _ in store.iter_vectors(filter={"tags": "note"})} == {items[4].id, items[5].id}


def test_hostile_filter_values_stay_data(store: MilvusStore) -> None:
    items = [
        image_item(i, source=value, tags=[value], metadata={"note": value, value: "as key"})
        for i, value in enumerate(HOSTILE)
    ]
    fused = unit_vectors(len(items), seed=3)
    store.upsert(items, fused, unit_vectors(len(items), seed=4))
    for item, value in zip(items, HOSTILE):
        for filters in ({"source": value}, {"tags": value}, {"note": value}, {value: "as key"}, {"source": [value]}):
            assert store.count(filters) == 1, filters
            assert [h.id for h in store.search(fused[0], k=20, filter=filters)] == [item.id], filters
        assert store.count({"source": {"!=": value}}) == len(items) - 1
    assert store.count({"source": 'nothing" or 1==1 or "'}) == 0
    assert store.count({"note": "x' or 1==1 or 'y"}) == 0
    assert store.delete(filter={"source": '" or 1==1 or "'}) == 1
    assert store.count() == len(items) - 1


def test_another_encoder_is_refused(db: str) -> None:
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as store:
        items, fused, image = _corpus()
        store.upsert(items, fused, image)
    other_weights = EncoderInfo(variant="random-64", dim=DIM, fingerprint="ffffffffffffffff")
    other_dim = EncoderInfo(variant="random-32", dim=32, fingerprint=ENCODER.fingerprint)
    for other in (other_weights, other_dim):
        with pytest.raises(EncoderMismatchError) as refused:
            MilvusStore.open(db, "knowledge", encoder_info=other)
        message = str(refused.value)
        assert ENCODER.describe() in message and other.describe() in message and "RAG_WEIGHTS=random-64" in message
    # The same encoder, or none at all, reopens it with its data.
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER, create=False) as store:
        assert store.count() == len(items)
    with MilvusStore.open(db, "knowledge", create=False) as store:
        assert store.encoder == ENCODER and store.search(fused[0], k=1)[0].id == items[0].id


def test_missing_and_foreign_collections_are_refused(lite_db: str) -> None:
    db = lite_db
    with pytest.raises(DatabaseNotFoundError, match="no Milvus Lite database"):
        MilvusStore.open(db, "nothing", create=False)
    with pytest.raises(StoreError, match="needs encoder_info"):
        MilvusStore.open(db, "nothing")
    with pytest.raises(CollectionNotFoundError, match="no collection 'nothing'"):
        MilvusStore.open(db, "nothing", create=False)  # the database exists now
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as store:
        client = MilvusClient(store.address)  # the folder's shared server, as any pymilvus client reaches it
        client.create_collection("foreign", dimension=DIM)
        with pytest.raises(StoreError, match="not made by this library"):
            MilvusStore.open(db, "foreign", encoder_info=ENCODER)
        client.close()
    with pytest.raises(StoreError, match=r"must end in \.db"):
        MilvusStore.open(Path(db).with_suffix(""), "knowledge", encoder_info=ENCODER)


def test_a_collection_of_an_older_schema_is_refused(db: str) -> None:
    with MilvusStore.open(db, "old", encoder_info=ENCODER) as store:
        store._core.client.alter_collection_properties("old", properties={"mmrag.schema_version": "1"})
    with pytest.raises(
        StoreError, match=r"schema version 1, this library reads 3 \(after `rag migrate`\) and writes 4"
    ):
        MilvusStore.open(db, "old", create=False)


def test_tuned_blends_are_kept_per_query_kind(store: MilvusStore) -> None:
    from datetime import datetime, timezone

    from connectors.milvus import TunedBlend

    def tuned(weights: dict[str, float]) -> TunedBlend:
        return TunedBlend(weights=weights, queries=3, metrics={"ndcg@10": 0.5}, tuned_at=datetime.now(timezone.utc))

    store.save_tuned_blends({"text": tuned({"fused": 0.7, "bm25": 0.3}), "image": tuned({"image": 1.0})})
    store.save_tuned_blends({"text": tuned({"fused": 0.4, "image": 0.6})})  # a later tuning of text queries only
    saved = store.tuned_blends()
    assert saved["text"].blend.weights == pytest.approx({"fused": 0.4, "image": 0.6})
    assert saved["image"].blend.weights == {"image": 1.0} and store.stats().tuned_blends == saved
    store.set_properties({"other": 1})
    assert store.tuned_blends() == saved
    before = store.properties()
    store.set_properties({})  # nothing to record (a copy of a collection that had none): no error, nothing lost
    assert store.properties() == before


def test_bad_vectors_and_oversized_items_are_refused(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    with pytest.raises(ValueError, match="shape"):
        store.upsert(items, fused[:, :32], image)
    with pytest.raises(ValueError, match="L2-normalised"):
        store.upsert(items, fused * 2, image)
    with pytest.raises(ValueError, match="no image vectors"):
        store.upsert(items, fused, None)
    nan = image.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        store.upsert(items, fused, nan)
    huge = text_item(0, text="é" * 40_000)
    assert item_problems(huge) == ["text is 80000 bytes (limit 65535)"]
    with pytest.raises(ValueError, match=huge.id):
        store.upsert([huge], fused[:1])
    with pytest.raises(ValueError, match="values"):
        store.search(fused[0][:10])
    assert store.count() == 0


def test_bm25_text_and_hybrid_search(store: MilvusStore) -> None:
    items, fused, image = _corpus()
    items[1] = image_item(1, text="a zebra grazing on the savanna")
    items[4] = text_item(4, text="zebra stripes confuse biting flies", tags=["note"])
    store.upsert(items, fused, image)
    hits = store.text_search("zebra stripes", k=5)
    assert [h.id for h in hits] == [items[4].id, items[1].id]
    assert hits[0].score > hits[1].score > 0
    assert [h.id for h in store.text_search("zebra", k=5, filter={"modality": "image+text"})] == [items[1].id]
    # Dense on item 3's vector, text on item 4's words: both lead the fused ranking.
    for fusion in ("rrf", "weighted"):
        top = store.hybrid_search(fused[3], "biting flies", blend=Blend.of({"fused": 1, "bm25": 1}, fusion), k=2)
        assert {h.id for h in top} == {items[3].id, items[4].id}, fusion
    image_only = store.hybrid_search(image[0], "zebra", blend=Blend.parse("image,bm25", "rrf"), k=10, only_images=True)
    assert items[4].id not in {h.id for h in image_only} and items[1].id in {h.id for h in image_only}
    with pytest.raises(BlendError, match="needs query text"):
        store.hybrid_search(fused[0], " ", blend=Blend.parse("fused,bm25"))


def test_without_bm25_text_search_says_why(db: str) -> None:
    with MilvusStore.open(db, "plain", encoder_info=ENCODER, bm25=False) as store:
        assert not store.supports_bm25 and not store.stats().bm25
        with pytest.raises(NotSupportedError, match="created without it"):
            store.text_search("anything")
        with pytest.raises(NotSupportedError):
            store.hybrid_search(unit_vectors(1)[0], "anything", blend=Blend.parse("fused,bm25"))
        assert store.signals == ("fused", "image")
    with MilvusStore.open(db, "plain", create=False) as store:
        assert not store.supports_bm25


def test_reopening_keeps_everything(db: str) -> None:
    items, fused, image = _corpus()
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as store:
        store.upsert(items, fused, image)
        store.flush()
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as store:
        assert store.count() == len(items)
        assert store.search(image[2], field="image", k=1)[0].id == items[2].id
        assert store.text_search("picture 2", k=1)[0].id == items[2].id
        store.drop()
    assert list_collections(db) == []


def _python(code: str, db: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_a_folder_held_by_another_process_is_reported_and_freed_on_close(lite_db: str) -> None:
    db = lite_db
    Path(db).parent.mkdir(parents=True)
    holder = _python(
        "import sys; from pymilvus import MilvusClient; MilvusClient(sys.argv[1]); print('ready', flush=True); "
        "sys.stdin.read()",
        db,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="in use by another process"):
            MilvusStore.open(db, "knowledge", encoder_info=ENCODER)
    finally:
        holder.communicate(input="", timeout=30)
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER, options=ConnectOptions(lite="in-process")):
        pass
    # Closed, and opened in this process: another process can open the folder in-process now.
    reader = _python(
        "import sys; from pymilvus import MilvusClient; print(MilvusClient(sys.argv[1]).list_collections())", db
    )
    assert "'knowledge'" in reader.communicate(timeout=30)[0]


def test_llama_index_milvus_vector_store_reads_our_rows(lite_db: str) -> None:
    db = lite_db
    items, fused, image = _corpus()
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as store:
        store.upsert(items, fused, image)

    # Stock constructor, field names only, on the folder's shared server; Milvus Lite needs the collection loaded
    # once opened anew.
    with shared_lite(db) as uri:
        stock = MilvusVectorStore(
            uri=uri,
            collection_name="knowledge",
            dim=DIM,
            embedding_field="embedding",
            text_key="text",
            use_async_client=False,
        )
        stock.client.load_collection("knowledge")
        index = VectorStoreIndex.from_vector_store(stock, embed_model=MockEmbedding(embed_dim=DIM))
        hits = index.as_retriever(similarity_top_k=2).retrieve(QueryBundle("ignored", embedding=fused[2].tolist()))
        node = hits[0].node
        assert isinstance(node, ImageNode) and node.node_id == items[2].id
        assert (
            node.text == items[2].text and node.image_path == items[2].image.uri and node.image_mimetype == "image/jpeg"
        )
        assert node.metadata["rank"] == 2 and node.metadata["source"] == items[2].source
        assert node.metadata["tags"] == ["picture", "n2"] and node.ref_doc_id == items[2].source
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)

        text_hit = index.as_retriever(similarity_top_k=1).retrieve(QueryBundle("ignored", embedding=fused[5].tolist()))[
            0
        ]
        assert isinstance(text_hit.node, TextNode) and text_hit.node.get_content() == items[5].text

    # The helper also wires BM25 so LlamaIndex's hybrid mode runs on our sparse field.
    helper = llama_vector_store(db, "knowledge", use_async_client=False)
    result = helper.query(
        VectorStoreQuery(
            query_embedding=fused[0].tolist(), query_str="topic 1", similarity_top_k=2, mode=VectorStoreQueryMode.HYBRID
        )
    )
    assert {n.node_id for n in result.nodes} == {items[0].id, items[5].id}


def test_item_problems_name_every_limit() -> None:
    item = image_item(
        0,
        tags=["t" * 600] * 300,
        metadata={"blob": "x" * 70_000},
        source="s" * 5_000,
    )
    problems = item_problems(item)
    assert problems[:3] == [
        "300 tags (limit 256)",
        "300 tag(s) over 512 bytes",
        "metadata is 70012 bytes of JSON (limit 65536)",
    ]
    assert any(p.startswith("source is 5000 bytes") for p in problems)
    assert any("_node_content" in p and "metadata too large" in p for p in problems)
    assert item_problems(text_item(0, metadata={"when": object()}))[0].startswith("metadata is not plain JSON")


@pytest.mark.parametrize(
    "item",
    [
        image_item(0),
        text_item(1),
        image_item(
            2, metadata={"note": 'ü😀\x01"\\' * 2_000, "nested": [{"k": "v" * 300}] * 20}, tags=["é" * 500] * 256
        ),
        text_item(3, metadata={"page": 1, "path": "/a/b" * 500}, source="s" * 4_000),
    ],
)
def test_the_node_copy_bound_is_never_below_the_node_copy(item: KnowledgeItem) -> None:
    from connectors.milvus.schema import node_content, node_content_bound

    assert len(node_content(item)[0].encode("utf-8")) <= node_content_bound(item)
