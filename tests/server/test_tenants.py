"""Tenants on the HTTP API: a tenant's token sees, counts, fetches and deletes only its tenant's items, in every
search mode and blend, whatever the request's filter says; it writes into its own tenant; admins see all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.milvus import EncoderInfo, MilvusStore, schema
from connectors.sources import open_sources
from rag.access import TokenStore
from rag.access.tenants import TENANT_KEY, tagged
from rag.ingest import ingest
from rag.retrieval import Mode
from rag.server import create_app
from rag.settings import Settings
from tests.ingest.test_pipeline import make_folder
from tests.server.test_api import png_bytes, wait_for

TENANTS = ("acme", "bravo")
#: Words only one tenant's documents hold: BM25 and text searches for them must not reach across.
SECRET = {"acme": "anchovy quarterly ledger", "bravo": "bravo zeppelin quarterly ledger"}
BLENDS = [{}, {"hybrid": "true"}, {"blend": "fused=0.5,bm25=0.5"}, {"blend": "fused=0.4,image=0.3,bm25=0.3"}]
#: Filters that try to reach another tenant: each is refused (400, 403) or finds nothing of it.
INJECTIONS = [
    "tenant=bravo",
    '{"tenant": "bravo"}',
    '{"tenant": {"!=": "acme"}}',
    '{"tenant": ["acme", "bravo"]}',
    'tenant=acme" or tenant != "x',
    "tenant=acme' or tenant != 'x",
    'source=img000.png" or tenant like "%',
    '{"metadata.tenant": "bravo"}',
]


@pytest.fixture(scope="module")
def world(settings: Settings, tiny_base, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two tenants with pictures and a document each, a default-tenant document, and tokens for each of them."""
    root = tmp_path_factory.mktemp("tenants")
    served = Settings(**{**settings.model_dump(), "collection": "tenants", "data_dir": root / "data"})
    ids: dict[str, set[str]] = {}
    with MilvusStore.open(served.milvus_uri, served.collection, encoder_info=EncoderInfo.of(tiny_base)) as store:
        for tenant in (*TENANTS, "default"):
            folder = make_folder(root / tenant, 3, caption=f"{tenant} item {{i}}: a {{colour}} square")
            (folder / f"{tenant}-notes.md").write_text(f"# {tenant} notes\n\nThe {SECRET.get(tenant, 'plain')}.\n")
            ingest(tagged(open_sources([folder]), tenant), tiny_base, store)
        for item, _, _ in store.iter_vectors():
            ids.setdefault(item.tenant, set()).add(item.id)
    tokens = TokenStore(served.data_dir)
    made = {
        "acme": tokens.add("acme-reader", "read", "acme")[1],
        "acme-writer": tokens.add("acme-writer", "write", "acme")[1],
        "bravo": tokens.add("bravo-reader", "read", "bravo")[1],
        "bravo-writer": tokens.add("bravo-writer", "write", "bravo")[1],
        "empty": tokens.add("nobody-home", "read", "empty")[1],
        "admin": tokens.add("root", "admin")[1],
    }
    with TestClient(create_app(served, encoder=tiny_base)) as client:
        yield {"client": client, "ids": ids, "tokens": made, "settings": served, "root": root}


def as_(world: dict[str, Any], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def searched(world: dict[str, Any], who: str, image: bytes | None = None, **form: str) -> list[dict[str, Any]]:
    files = {"image": ("q.png", image, "image/png")} if image is not None else None
    response = world["client"].post("/api/search", data=form, files=files, headers=as_(world, who))
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_the_world_holds_each_tenant(world: dict[str, Any]) -> None:
    assert TENANT_KEY == schema.TENANT
    assert {tenant: len(ids) for tenant, ids in world["ids"].items()} == {"acme": 4, "bravo": 4, "default": 4}


@pytest.mark.parametrize("mode", list(Mode))
def test_every_mode_and_blend_returns_only_the_tokens_tenant(world: dict[str, Any], mode: Mode) -> None:
    picture = (world["root"] / "bravo" / "img001.png").read_bytes()  # another tenant's very picture
    text = "bravo zeppelin item 1: a blue square"
    query: dict[str, Any] = {
        "text": {"text": text},
        "image": {"image": picture},
        "composed": {"text": text, "image": picture},
    }[mode.query.value]
    image = query.pop("image", None)
    for blend in BLENDS if mode.query.value == "text" or mode is Mode.COMPOSED_TO_ANY else [{}]:
        for who, tenant in (("acme", "acme"), ("bravo", "bravo")):
            results = searched(world, who, image, **query, **blend, mode=mode.value, top_k="20")
            found = {r["id"] for r in results}
            assert found <= world["ids"][tenant], (mode, blend, who)
            assert not any("bravo" in r.get("text", "") for r in results) or tenant == "bravo"


@pytest.mark.parametrize("injection", INJECTIONS)
def test_a_filter_cannot_reach_another_tenant(world: dict[str, Any], injection: str) -> None:
    response = world["client"].post(
        "/api/search", data={"text": "bravo zeppelin", "filter": injection, "top_k": "20"}, headers=as_(world, "acme")
    )
    assert response.status_code in (200, 400, 403), response.text
    if response.status_code == 200:
        assert {r["id"] for r in response.json()["results"]} <= world["ids"]["acme"], injection
    elif response.status_code == 403:
        assert "sees tenant 'acme' only" in response.json()["message"]
    deleted = world["client"].delete("/api/items", params={"filter": injection}, headers=as_(world, "acme-writer"))
    assert deleted.status_code in (200, 400, 403) and deleted.json().get("deleted", 0) == 0, injection
    assert world["client"].get("/api/stats", headers=as_(world, "admin")).json()["count"] == 12


def test_bm25_words_of_another_tenant_find_nothing_of_it(world: dict[str, Any]) -> None:
    for blend in ({"hybrid": "true"}, {"blend": "bm25=1"}):
        results = searched(world, "acme", text="zeppelin", mode="text-to-text", **blend)
        assert {r["id"] for r in results} <= world["ids"]["acme"]
        assert all("zeppelin" not in r.get("text", "") for r in results)
    bravo = searched(world, "bravo", text="zeppelin", mode="text-to-text", blend="bm25=1")
    assert "zeppelin" in bravo[0]["text"]  # the word is there, for its own tenant


def test_ask_cites_only_the_tokens_tenant(world: dict[str, Any]) -> None:
    for who in ("acme", "bravo"):
        response = world["client"].post(
            "/api/ask", data={"text": "what does the quarterly ledger say?", "top_k": "20"}, headers=as_(world, who)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        cited = {c["id"] for c in body["citations"]}
        assert cited and cited <= world["ids"][who]
        other = "bravo" if who == "acme" else "acme"
        assert other not in body["answer"].lower()


def test_counts_images_and_an_empty_tenant(world: dict[str, Any]) -> None:
    client = world["client"]
    counts = {who: client.get("/api/stats", headers=as_(world, who)).json() for who in ("acme", "empty", "admin")}
    assert (counts["acme"]["count"], counts["empty"]["count"], counts["admin"]["count"]) == (4, 0, 12)
    assert (counts["acme"]["tenant"], counts["admin"]["tenant"]) == ("acme", None)
    assert searched(world, "empty", text="a red square") == []
    for who, tenant in (("acme", "acme"), ("bravo", "bravo")):
        other = "bravo" if tenant == "acme" else "acme"
        for item_id in world["ids"][other]:
            response = client.get(f"/api/items/{item_id}/image", headers=as_(world, who))
            assert response.status_code == 404 and "image/" not in response.headers["content-type"]
            assert item_id in response.json()["message"]  # the same answer as for an id that does not exist
        images = [client.get(f"/api/items/{i}/image", headers=as_(world, who)) for i in world["ids"][tenant]]
        assert sorted(r.status_code for r in images) == [200, 200, 200, 404]  # the notes have no image
        for item_id in world["ids"][other]:  # the document route (the file an item came from) alike
            response = client.get(f"/api/items/{item_id}/source", headers=as_(world, who))
            assert response.status_code == 404 and other not in response.text
        documents = [client.get(f"/api/items/{i}/source", headers=as_(world, who)) for i in world["ids"][tenant]]
        assert all(r.status_code == 200 for r in documents)
        assert any(SECRET[tenant] in r.text for r in documents)


def test_an_admin_sees_every_tenant_and_may_pick_one(world: dict[str, Any]) -> None:
    everything = {r["id"] for r in searched(world, "admin", text="a square", top_k="50")}
    assert everything == set().union(*world["ids"].values())
    bravo = {r["id"] for r in searched(world, "admin", text="a square", top_k="50", filter="tenant=bravo")}
    assert bravo == world["ids"]["bravo"]


def test_a_tenants_writer_uploads_into_its_tenant_and_deletes_only_there(world: dict[str, Any]) -> None:
    client, ids = world["client"], world["ids"]
    same_name = [("files", ("shared-name.png", png_bytes(colour=(9, 99, 199)), "image/png"))]
    for writer in ("acme-writer", "bravo-writer"):  # the same file name in two tenants: two uploads, two items
        job = client.post(
            "/api/ingest", files=same_name, data={"captions": ["a shared name"]}, headers=as_(world, writer)
        )
        assert job.status_code == 202, job.text
        done = wait_for_as(client, job.json()["id"], as_(world, writer))
        assert (done["status"], done["added"], done["tenant"]) == ("done", 1, writer.split("-")[0])
    # Each writer sees its own job only.
    acme_jobs = client.get("/api/ingest", headers=as_(world, "acme-writer")).json()
    assert acme_jobs and all(j["tenant"] == "acme" for j in acme_jobs)
    bravo_job = client.get("/api/ingest", headers=as_(world, "bravo-writer")).json()[0]["id"]
    assert client.get(f"/api/ingest/{bravo_job}", headers=as_(world, "acme-writer")).status_code == 404
    # A writer cannot pick another tenant.
    refused = client.post("/api/ingest", files=same_name, data={"tenant": "bravo"}, headers=as_(world, "acme-writer"))
    assert refused.status_code == 403
    assert client.get("/api/stats", headers=as_(world, "acme")).json()["count"] == 5
    assert client.get("/api/stats", headers=as_(world, "bravo")).json()["count"] == 5
    # Deleting by that name deletes acme's, and bravo's stays, as does everything else.
    deleted = client.delete(
        "/api/items", params={"filter": "source=shared-name.png"}, headers=as_(world, "acme-writer")
    )
    assert deleted.json() == {"deleted": 1}
    with MilvusStore.open(world["settings"].milvus_uri, "tenants", create=False) as store:
        left = {item.tenant: set() for item, _, _ in store.iter_vectors()}
        for item, _, _ in store.iter_vectors():
            left[item.tenant].add(item.id)
    assert left["acme"] == ids["acme"] and left["default"] == ids["default"]
    assert ids["bravo"] < left["bravo"] and len(left["bravo"]) == 5
    audit = [json.loads(line) for line in (world["settings"].data_dir / "audit.jsonl").read_text().splitlines()]
    assert ("delete", "acme-writer", "acme", 1) in {
        (a["action"], a["token"], a["tenant"], a.get("deleted")) for a in audit
    }


def wait_for_as(client: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    client.headers.update(headers)
    try:
        return wait_for(client, job_id)
    finally:
        client.headers.pop("Authorization", None)


def test_tenant_upload_folders_are_apart(world: dict[str, Any]) -> None:
    uploads = Path(world["settings"].data_dir) / "uploads"
    kept = sorted(p.parent.name for p in uploads.rglob("shared-name.png"))
    assert len(kept) == 2 and kept[0] != kept[1]


def test_a_kept_conversation_continues_only_for_whoever_started_it() -> None:
    from rag.access import Principal, Scope
    from rag.server.auth import owner
    from rag.server.conversations import ConversationNotFoundError, Conversations

    kept = Conversations(None, ttl=60, history_tokens=1000)
    alice = owner(Principal("alice", Scope.READ, "acme"))
    mine = kept.get(None, alice)
    assert kept.get(mine.id, alice) is mine
    for other in (
        Principal("bob", Scope.READ, "bravo"),
        Principal("alice", Scope.READ, None),
        Principal(None, Scope.ADMIN),
    ):
        with pytest.raises(ConversationNotFoundError):
            kept.get(mine.id, owner(other))
    kept.close()
