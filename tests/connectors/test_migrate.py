"""`rag migrate`: a schema 3 collection opens read-only, then is copied to schema 4 with its vectors kept."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import CollectionSchema
from typer.testing import CliRunner

from connectors.milvus import MilvusStore, SchemaOutdatedError, list_collections, schema
from connectors.milvus import migrate as migration
from connectors.milvus.migrate import migrate
from rag.cli import app
from rag.items import KnowledgeItem

from .milvus_corpus import ENCODER, image_item, text_item, unit_vectors


def _corpus() -> tuple[list[KnowledgeItem], np.ndarray, np.ndarray]:
    items = [image_item(i, tags=["picture"]) for i in range(3)] + [text_item(i) for i in range(3)]
    return items, unit_vectors(len(items), seed=1), unit_vectors(len(items), seed=2)


def make_v3(db: str, name: str, monkeypatch: pytest.MonkeyPatch) -> list[KnowledgeItem]:
    """A collection as schema 3 wrote it (no ref_doc_id, content_hash, tenant), holding the corpus."""
    full = schema.build_schema

    def v3_schema(dim: int, **kwargs: bool) -> CollectionSchema:
        built = full(dim, **kwargs)
        fields = [f for f in built.fields if f.name not in schema.V4_FIELDS]
        return CollectionSchema(fields, functions=built.functions, enable_dynamic_field=False)

    items, fused, image = _corpus()
    with monkeypatch.context() as patch:
        patch.setattr(schema, "build_schema", v3_schema)
        store = MilvusStore.open(db, name, encoder_info=ENCODER)
    core = store._core
    core.client.alter_collection_properties(name, properties={"mmrag.schema_version": "3"})
    rows = [
        {k: v for k, v in schema.to_row(item, fused[i], image[i]).items() if k not in schema.V4_FIELDS}
        for i, item in enumerate(items)
    ]
    if core.terms is not None:
        core.terms.weigh(rows, [])
    core.client.upsert(name, rows)
    core.client.flush(name)
    if core.terms is not None:
        core.terms.settle(len(rows))
    store.set_properties({"note": "kept"})
    store.close()
    return items


def test_an_older_collection_opens_read_only_naming_the_migration(milvus_uri, monkeypatch):
    items = make_v3(milvus_uri, "old", monkeypatch)
    with MilvusStore.open(milvus_uri, "old", create=False) as store:
        assert "rag migrate -c old" in store.read_only and "\n" not in store.read_only
        assert store.count() == 6
        found = store.get([items[0].id])[0]
        assert (found.name, found.ref_doc_id, found.tenant) == (items[0].name, items[0].source, "default")
        assert store.search(unit_vectors(6, seed=1)[4], k=1)[0].item.id == items[4].id
        with pytest.raises(SchemaOutdatedError, match="rag migrate -c old"):
            store.upsert(items[:1], unit_vectors(1), unit_vectors(1))
        with pytest.raises(SchemaOutdatedError, match="rag migrate -c old"):
            store.delete(ids=[items[0].id])
        assert store.count() == 6


def test_migrate_copies_every_item_with_its_vectors(milvus_uri, monkeypatch):
    items = make_v3(milvus_uri, "old", monkeypatch)
    with MilvusStore.open(milvus_uri, "old", create=False) as before:
        vectors = {item.id: (fused, picture) for item, fused, picture in before.iter_vectors()}
    assert migrate(milvus_uri, "old") == 6
    with MilvusStore.open(milvus_uri, "old", create=False) as store:
        assert store.read_only == ""
        copied = {item.id: (item, fused, picture) for item, fused, picture in store.iter_vectors()}
        assert sorted(copied) == sorted(item.id for item in items)
        for item in items:
            got, fused, picture = copied[item.id]
            assert (got.name, got.text, got.tags, got.ref_doc_id) == (item.name, item.text, item.tags, item.source)
            np.testing.assert_array_equal(fused, vectors[item.id][0])
            if item.image is not None:
                np.testing.assert_array_equal(picture, vectors[item.id][1])
        assert store.text_search("note topic", k=3)  # BM25 came along
        assert store.properties()["note"] == "kept"
        store.upsert([text_item(9)], unit_vectors(1, seed=9))  # writable again
        assert store.count() == 7
    assert not [name for name in list_collections(milvus_uri) if "__" in name and not name.endswith("__bm25_terms")]
    assert migrate(milvus_uri, "old") == 0  # current already


def test_a_migration_killed_before_the_rename_is_finished_by_the_next(milvus_uri, monkeypatch):
    make_v3(milvus_uri, "old", monkeypatch)

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(migration, "_swap", killed)
        with pytest.raises(KeyboardInterrupt):
            migrate(milvus_uri, "old")
    assert "old" not in list_collections(milvus_uri)  # dropped; the complete copy waits under its own name
    assert migrate(milvus_uri, "old") == 6
    with MilvusStore.open(milvus_uri, "old", create=False) as store:
        assert store.read_only == "" and store.count() == 6


def test_cli_writes_to_an_older_collection_exit_2_and_migrate_fixes_it(tmp_path, monkeypatch):
    db = str(tmp_path / "lite" / "milvus.db")
    make_v3(db, "old", monkeypatch)
    runner = CliRunner()
    refused = runner.invoke(app, ["delete", "-c", "old", "--uri", db, "-f", "tags=picture", "--yes"])
    assert refused.exit_code == 2 and "rag migrate -c old" in refused.output
    done = runner.invoke(app, ["migrate", "-c", "old", "--uri", db, "--json"])
    assert done.exit_code == 0 and '"migrated": 6' in done.stdout
    deleted = runner.invoke(app, ["delete", "-c", "old", "--uri", db, "-f", "tags=picture", "--yes", "--json"])
    assert deleted.exit_code == 0, deleted.output
    with MilvusStore.open(db, "old", create=False) as store:
        assert store.count() == 3
