"""``/api/items/{id}/source``: a result's document served by the item's id, at its anchor; never a path."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest
from rag.server import create_app
from rag.settings import Settings


def test_an_items_document_is_served_by_id_and_pages_are_sandboxed(
    settings: Settings, tiny_base, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\nRead me.\n\n## Install\n\nRun make.\n")
    (docs / "page.html").write_text("<h1 id='top'>Page</h1><p>Hi.</p><script>alert(1)</script>")
    changed = Settings(**{**settings.model_dump(), "collection": "sources"})
    with MilvusStore.open(changed.milvus_uri, "sources", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([docs], cache_dir=tmp_path / "cache"), tiny_base, store)
        items = {hit.item.name: hit.item for hit in store.search(tiny_base.encode_text(["x"])[0], k=10)}
    with TestClient(create_app(changed, encoder=tiny_base)) as client:
        markdown = client.get(f"/api/items/{items['guide.md#install'].id}/source")
        assert markdown.status_code == 200 and markdown.text == (docs / "guide.md").read_text()
        assert markdown.headers["content-type"] == "text/plain; charset=utf-8"  # shown, not downloaded
        page = client.get(f"/api/items/{items['page.html#top'].id}/source")
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == "sandbox"  # its script never runs on this origin
        for item_id in ("0" * 32, "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
            refused = client.get(f"/api/items/{item_id}/source")
            assert refused.status_code == 404 and "root:" not in refused.text
        (docs / "guide.md").unlink()
        gone = client.get(f"/api/items/{items['guide.md#install'].id}/source")
        assert gone.status_code == 404 and "not a file this server keeps" in gone.json()["message"]
