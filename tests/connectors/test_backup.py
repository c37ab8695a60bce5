"""`rag backup` / `rag restore`: a collection copied to a folder with its vectors, properties and uploads, and back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from connectors.milvus import Blend, EncoderInfo, MilvusStore
from connectors.milvus import backup as backup_module
from connectors.milvus.backup import BackupError, backup, restore
from connectors.sources import SourceOptions, open_sources
from rag.cli import app
from rag.ingest import ingest
from tests.helpers.documents import png

from .milvus_corpus import ENCODER, image_item, text_item, unit_vectors

pytestmark = pytest.mark.slow


def _db(tmp_path: Path) -> str:
    return str(tmp_path / "db" / "milvus.db")


def _corpus(tmp_path: Path, encoder, uri: str | None = None) -> Path:
    """A folder of texts, and a picture uploaded as `rag serve` keeps it (under the data folder's uploads),
    ingested into ``items``; returns the data folder."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.md").write_text("# Quokkas\n\nQuokkas live on Rottnest island.\n\n# Wombats\n\nWombats dig burrows.\n")
    (folder / "b.txt").write_text("Numbats eat termites in the woodlands.\n")
    (folder / "red.png").write_bytes(png((200, 10, 10)))
    data = tmp_path / "data"
    upload = data / "uploads" / "0a1b2c3d" / "blue.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(png((10, 10, 200)))
    (data / "uploads" / "ffffffff").mkdir()
    (data / "uploads" / "ffffffff" / "orphan.png").write_bytes(png((0, 0, 0)))  # no item points to it
    options = SourceOptions(cache_dir=tmp_path / "cache", text_window=encoder.text_window)
    with MilvusStore.open(uri or _db(tmp_path), "items", encoder_info=EncoderInfo.of(encoder)) as store:
        ingest(open_sources([folder, upload], options), encoder, store)
        store.set_properties({"note": "kept"})
    return data


def _snapshot(store: MilvusStore, encoder) -> dict:
    vector = encoder.encode_text(["where do quokkas live"])[0]
    hits = store.search(vector, k=4)
    blended = store.hybrid_search(vector, "termites", blend=Blend.parse("fused,bm25", "rrf"), k=4)
    return {
        "count": store.count(),
        "items": {item.id: (item, fused, image) for item, fused, image in store.iter_vectors()},
        "search": [(hit.item.id, round(hit.score, 5)) for hit in hits],
        "bm25": [(hit.item.id, round(hit.score, 5)) for hit in store.text_search("termites", k=4)],
        "hybrid": [hit.item.id for hit in blended],
        "properties": store.properties(),
    }


def _same_items(before: dict, after: dict, moved: tuple[str, str] | None = None) -> None:
    assert sorted(after["items"]) == sorted(before["items"])
    for key, (item, fused, image) in before["items"].items():
        got, got_fused, got_image = after["items"][key]
        source = item.source.replace(*moved) if moved else item.source
        assert (got.name, got.text, got.source, got.ref_doc_id.replace(*moved) if moved else got.ref_doc_id) == (
            item.name,
            item.text,
            source,
            item.ref_doc_id.replace(*moved) if moved else item.ref_doc_id,
        )
        np.testing.assert_array_equal(got_fused, fused)
        assert (image is None) == (got_image is None)
        if image is not None:
            np.testing.assert_array_equal(got_image, image)


def test_backup_drop_restore_gives_back_the_same_collection(tiny_base, tmp_path, milvus_uri):
    data = _corpus(tmp_path, tiny_base, milvus_uri)
    with MilvusStore.open(milvus_uri, "items", create=False) as store:
        before = _snapshot(store, tiny_base)
    assert before["bm25"] and before["count"] >= 5
    assert any("uploads" in item.source for item, _, _ in before["items"].values())
    done = backup(milvus_uri, "items", tmp_path / "bk", data_dir=data)
    assert (done.items, done.uploads) == (before["count"], 1)  # the orphan upload is not copied
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert (manifest["collection"], manifest["items"], manifest["properties"]["note"]) == ("items", done.items, "kept")
    with MilvusStore.open(milvus_uri, "items", create=False) as store:
        store.drop()
    restored = restore(tmp_path / "bk", milvus_uri, data_dir=data)
    assert (restored.collection, restored.items) == ("items", before["count"])
    with MilvusStore.open(milvus_uri, "items", create=False) as store:
        after = _snapshot(store, tiny_base)
    _same_items(before, after)
    for key in ("count", "search", "bm25", "hybrid"):
        assert after[key] == before[key], key
    assert after["properties"]["note"] == "kept"


def test_restore_refuses_an_existing_collection_and_a_new_name_leaves_the_original_alone(tiny_base, tmp_path):
    data = _corpus(tmp_path, tiny_base)
    with MilvusStore.open(_db(tmp_path), "items", create=False) as store:
        before = _snapshot(store, tiny_base)
    backup(_db(tmp_path), "items", tmp_path / "bk", data_dir=data)
    with pytest.raises(BackupError, match="exists"):
        backup(_db(tmp_path), "items", tmp_path / "bk", data_dir=data)  # a backup folder is never overwritten
    runner = CliRunner()
    refused = runner.invoke(app, ["restore", str(tmp_path / "bk"), "--uri", _db(tmp_path)])
    assert refused.exit_code == 2 and "--replace" in refused.output
    other_data = tmp_path / "data2"
    env = {"RAG_DATA_DIR": str(other_data)}
    copy = runner.invoke(
        app, ["restore", str(tmp_path / "bk"), "-c", "copy", "--uri", _db(tmp_path), "--json"], env=env
    )
    assert copy.exit_code == 0, copy.output
    assert json.loads(copy.stdout.strip().splitlines()[-1])["items"] == before["count"]
    with MilvusStore.open(_db(tmp_path), "items", create=False) as store:
        untouched = _snapshot(store, tiny_base)
        assert sorted(store.list_collections()) == ["copy", "items"]
    _same_items(before, untouched)
    assert untouched["search"] == before["search"] and untouched["bm25"] == before["bm25"]
    assert (data / "uploads" / "0a1b2c3d" / "blue.png").is_file()
    old, new = str((data / "uploads").resolve()), str((other_data / "uploads").resolve())
    with MilvusStore.open(_db(tmp_path), "copy", create=False) as store:
        copied = _snapshot(store, tiny_base)
    _same_items(before, copied, moved=(old, new))
    uploaded = [item for item, _, _ in copied["items"].values() if item.source.startswith(new)]
    assert len(uploaded) == 1 and Path(uploaded[0].source).read_bytes() == png((10, 10, 200))
    assert not (other_data / "uploads" / "ffffffff").exists()
    assert copied["search"] == before["search"] and copied["bm25"] == before["bm25"]
    # --replace swaps a complete copy in
    replaced = runner.invoke(
        app, ["restore", str(tmp_path / "bk"), "-c", "copy", "--replace", "--uri", _db(tmp_path)], env=env
    )
    assert replaced.exit_code == 0, replaced.output
    with MilvusStore.open(_db(tmp_path), "copy", create=False) as store:
        assert store.count() == before["count"]
        assert sorted(store.list_collections()) == ["copy", "items"]


def test_a_collection_without_properties_round_trips_through_the_cli(tmp_path):
    items = [image_item(i) for i in range(3)] + [text_item(i) for i in range(3)]
    db = str(tmp_path / "db" / "milvus.db")
    with MilvusStore.open(db, "kb", encoder_info=ENCODER) as store:
        store.upsert(items, unit_vectors(6, seed=1), unit_vectors(6, seed=2))
        before = {item.id: fused for item, fused, _ in store.iter_vectors()}
    runner = CliRunner()
    env = {"RAG_DATA_DIR": str(tmp_path / "data")}
    saved = runner.invoke(app, ["backup", "-c", "kb", str(tmp_path / "bk"), "--uri", db, "--json"], env=env)
    assert saved.exit_code == 0, saved.output
    assert json.loads(saved.stdout.strip().splitlines()[-1])["items"] == 6
    again = runner.invoke(app, ["backup", "-c", "kb", str(tmp_path / "bk"), "--uri", db], env=env)
    assert again.exit_code == 2 and "not an empty folder" in again.output
    missing = runner.invoke(app, ["restore", str(tmp_path / "nothing"), "--uri", db], env=env)
    assert missing.exit_code == 2 and "holds no backup" in missing.output
    copy = runner.invoke(app, ["restore", str(tmp_path / "bk"), "-c", "kb2", "--uri", db], env=env)
    assert copy.exit_code == 0, copy.output
    said = " ".join(copy.output.split())  # rich wraps at the terminal's width
    assert said.startswith("restored collection 'kb2' from ") and said.endswith(": 6 item(s), 0 upload(s)")
    with MilvusStore.open(db, "kb2", create=False) as store:
        assert store.list_collections() == ["kb", "kb2"]
        after = {item.id: fused for item, fused, _ in store.iter_vectors()}
    assert sorted(after) == sorted(before)
    for key, vector in before.items():
        np.testing.assert_array_equal(after[key], vector)


def test_a_failed_restore_leaves_nothing_half_made(tmp_path, monkeypatch):
    items = [text_item(i) for i in range(3)]
    db = str(tmp_path / "db" / "milvus.db")
    with MilvusStore.open(db, "kb", encoder_info=ENCODER) as store:
        store.upsert(items, unit_vectors(3, seed=1), unit_vectors(3, seed=2))
    backup(db, "kb", tmp_path / "bk", data_dir=tmp_path / "data")

    def broken(new, batch):
        raise OSError("disk gone")

    monkeypatch.setattr(backup_module, "_write", broken)
    with pytest.raises(OSError, match="disk gone"):
        restore(tmp_path / "bk", db, data_dir=tmp_path / "data", replace=True)
    with MilvusStore.open(db, "kb", create=False) as store:
        assert store.list_collections() == ["kb"] and store.count() == 3
