"""``DELETE /api/items``: removes what the filter matches, nothing else, for those who may ingest."""

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


def _wait(client: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/api/ingest/{job_id}", headers=headers).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError("the ingest job did not finish")


@pytest.fixture
def served(tmp_path: Path, tiny_base) -> Any:
    """A server with a token over a collection holding a folder of pictures, a document of sections and uploads."""
    folder = make_folder(tmp_path / "pictures", 4)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\nIntro.\n\n## Install\n\nWheels.\n\n## Use\n\nSlowly.\n")
    settings = Settings(
        milvus_uri=str(tmp_path / "db" / "milvus.db"),
        collection="kb",
        data_dir=tmp_path / "data",
        server_token="s3cret",
    )
    with MilvusStore.open(settings.milvus_uri, "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([folder, tmp_path / "docs"]), tiny_base, store)
    auth = {"Authorization": "Bearer s3cret"}
    with TestClient(create_app(settings, encoder=tiny_base)) as client:
        files = [("files", (f"upload {i}.png", png_bytes(colour=(30 * i, 60, 90)), "image/png")) for i in range(2)]
        job = client.post("/api/ingest", files=files, data={"captions": ["one", "two"]}, headers=auth).json()
        assert _wait(client, job["id"], auth)["added"] == 2
        yield client, auth, settings


def _stored(settings: Settings) -> dict[str, str]:
    with MilvusStore.open(settings.milvus_uri, settings.collection, create=False) as store:
        return {item.id: item.name for item, _, _ in store.iter_vectors()}


def test_delete_by_filter_removes_only_the_matches(served) -> None:
    client, auth, settings = served
    before = _stored(settings)
    assert len(before) == 4 + 3 + 2
    section = next(i for i, name in before.items() if name == "guide.md#install")
    response = client.delete("/api/items", params={"filter": f"id={section}"}, headers=auth)
    assert response.status_code == 200 and response.json() == {"deleted": 1}
    assert _stored(settings) == {i: n for i, n in before.items() if i != section}  # the other sections stay

    upload = client.delete("/api/items", params={"filter": "source=upload 0.png"}, headers=auth)
    assert upload.json() == {"deleted": 1}
    left = _stored(settings)
    assert sorted(n for n in left.values() if n.startswith("upload")) == ["upload 1.png"]  # the other upload stays
    assert sum(n.startswith("img") for n in left.values()) == 4

    nothing = client.delete("/api/items", params={"filter": "tags=none-such"}, headers=auth)
    assert nothing.json() == {"deleted": 0} and _stored(settings) == left
    assert client.get("/api/stats", headers=auth).json()["can_delete"] is True


def test_delete_needs_the_token_and_a_well_formed_filter(served) -> None:
    client, auth, settings = served
    before = _stored(settings)
    assert client.delete("/api/items", params={"filter": "source=upload 0.png"}).status_code == 401
    malformed = client.delete("/api/items", params={"filter": "source"}, headers=auth)
    searched = client.post("/api/search", data={"text": "x", "filter": "source"}, headers=auth)
    assert malformed.status_code == searched.status_code == 400
    assert "key=value" in malformed.json()["message"] and malformed.json()["message"] in searched.json()["message"]
    empty = client.delete("/api/items", params={"filter": " "}, headers=auth)
    assert empty.status_code == 400 and "give a filter" in empty.json()["message"]
    assert client.delete("/api/items", headers=auth).status_code == 422  # no filter at all
    assert _stored(settings) == before
