"""Uploads never overwrite each other: an upload is known by its file name, whatever its bytes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest
from rag.server import create_app
from rag.settings import Settings
from tests.ingest.test_pipeline import make_folder
from tests.server.test_api import png_bytes
from tests.server.test_metrics import samples


@pytest.fixture
def app(tmp_path: Path, tiny_base) -> Any:
    settings = Settings(milvus_uri=str(tmp_path / "db" / "milvus.db"), collection="kb", data_dir=tmp_path / "data")
    folder = make_folder(tmp_path / "pictures", 2)  # img000.png, img001.png from a folder
    with MilvusStore.open(settings.milvus_uri, "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([folder]), tiny_base, store)
    with TestClient(create_app(settings, encoder=tiny_base)) as client:
        yield client, settings


def _upload(client: TestClient, files: list[tuple[str, bytes]], captions: list[str] | None = None) -> dict[str, Any]:
    sent = [("files", (name, data, "application/octet-stream")) for name, data in files]
    job = client.post("/api/ingest", files=sent, data={"captions": captions} if captions else {}).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = client.get(f"/api/ingest/{job['id']}").json()
        if done["status"] not in ("queued", "running"):
            assert done["status"] == "done", done
            return done
        time.sleep(0.05)
    raise AssertionError("the upload job did not finish")


def _stored(settings: Settings) -> dict[str, str]:
    """name → text of every item."""
    with MilvusStore.open(settings.milvus_uri, settings.collection, create=False) as store:
        return {item.name: item.text for item, _, _ in store.iter_vectors()}


def test_identical_bytes_under_two_names_are_two_items_both_searchable(app) -> None:
    client, settings = app
    picture = png_bytes(colour=(10, 200, 10))
    first = _upload(client, [("zebra.png", picture)], ["a zebra crossing the plain"])
    second = _upload(client, [("lamp.png", picture)], ["a lamp post at dusk"])
    assert (first["added"], second["added"], second["replaced"]) == (1, 1, 0)
    stored = _stored(settings)
    assert (stored["zebra.png"], stored["lamp.png"]) == ("a zebra crossing the plain", "a lamp post at dusk")
    for word, name in (("zebra", "zebra.png"), ("lamp", "lamp.png")):
        found = client.post("/api/search", data={"text": word, "blend": "bm25", "top_k": 1}).json()["results"]
        assert [r["name"] for r in found] == [name]
    assert {"img000.png", "img001.png"} <= set(stored)  # the folder's items are untouched
    encoded = samples(client)  # each upload job's batch is timed for /metrics
    batches = [
        encoded.get(("rag_encoder_batch_seconds_count", (("input", i),)), 0) for i in ("fused_and_image", "image")
    ]
    assert sum(batches) >= 2


def test_the_same_name_replaces_that_upload_only(app) -> None:
    client, settings = app
    _upload(
        client,
        [("photo.png", png_bytes(colour=(1, 2, 3))), ("other.png", png_bytes(colour=(4, 5, 6)))],
        ["old", "other"],
    )
    again = _upload(client, [("photo.png", png_bytes(colour=(7, 8, 9)))], ["new"])
    assert (again["added"], again["replaced"], again["removed"]) == (0, 1, 0)
    stored = _stored(settings)
    assert (stored["photo.png"], stored["other.png"]) == ("new", "other")
    assert len(stored) == 4  # two uploads and the folder's two pictures

    docs = _upload(client, [("notes.txt", b"The depot opens at dawn.")])
    redone = _upload(client, [("notes.txt", b"The depot closes at dusk.")])
    assert (docs["added"], redone["replaced"]) == (1, 1)
    texts = [text for name, text in _stored(settings).items() if name.startswith("notes.txt")]
    assert texts == ["The depot closes at dusk."]


def test_an_upload_named_as_a_stored_file_is_made_unique_by_one_scheme(app) -> None:
    client, settings = app
    _upload(client, [("img000.png", png_bytes(colour=(50, 50, 50)))], ["uploaded"])
    names = sorted(_stored(settings))
    uploaded = [name for name in names if name.endswith("img000.png") and name != "pictures/img000.png"]
    assert len(uploaded) == 1
    prefix = uploaded[0].split("/")[0]
    assert len(uploaded[0].split("/")) == 2 and len(prefix) == 8  # <8 hex>/img000.png
    assert "pictures/img000.png" in names  # the folder's file moved under its folder, as any two files of one name
