"""The HTTP API in-process: search, ask, item images, auth, upload limits, JSON errors, ingestion jobs."""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest
from rag.server import create_app
from rag.settings import Settings
from tests.conftest import load_tiny
from tests.helpers.llm import FakeLLMServer, Reply
from tests.retrieval.corpus import CAPTIONS, COPIES, NOTES, Corpus

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "corpus"


def png_bytes(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header announcing ``width`` x ``height`` pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def search(client: TestClient, image: bytes | None = None, **form: Any) -> Any:
    files = {"image": ("query.png", image, "image/png")} if image is not None else None
    return client.post("/api/search", data=form, files=files)


def sources(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["source"] for r in response.json()["results"]]


@pytest.fixture(scope="module")
def make_client(settings: Settings, tiny_base) -> Iterator[Any]:
    """Apps with other settings (token, limits, LLM) over the same corpus, or over a new collection (``create``);
    closed at the end of the module."""
    clients: list[TestClient] = []

    def make(create: bool = False, **overrides: Any) -> TestClient:
        changed = Settings(**{**settings.model_dump(), **overrides})
        if create:  # the server opens collections that exist, and creates none
            MilvusStore.open(changed.milvus_uri, changed.collection, encoder_info=EncoderInfo.of(tiny_base)).close()
        test_client = TestClient(create_app(changed, encoder=tiny_base))
        clients.append(test_client.__enter__())
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


# -- search and ask -------------------------------------------------------------------------


def test_health_stats_and_openapi(client: TestClient, corpus: Corpus) -> None:
    assert client.get("/health").json() == {"status": "ok", "store": "ok", "device": "cpu", "dtype": "float32"}
    assert client.get("/ready").json() == {"status": "ready"}
    stats = client.get("/api/stats").json()
    assert (stats["collection"], stats["count"], stats["dim"], stats["llm"]) == ("known", len(corpus.items), 64, None)
    assert (stats["uri"], stats["top_k"]) == (None, 10)  # the server's paths are its own
    assert stats["encoder_runtime"]["device"] == "cpu" and stats["encoder_runtime"]["reason"]
    schema = client.get("/openapi.json").json()
    routes = {"/api/search", "/api/ask", "/api/ingest", "/api/ingest/{job_id}", "/api/stats", "/health", "/ready"}
    assert {*routes, "/api/items/{item_id}/image"} <= set(schema["paths"])
    scale = schema["components"]["schemas"]["SearchResponse"]["properties"]["score_scale"]["description"]
    assert all(name in scale for name in ("cosine", "weighted", "rrf"))
    assert stats["tuned_blends"] == {}
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_api_docs_are_served_by_the_app(client: TestClient) -> None:
    for url, script in (("/docs", "/docs/assets/swagger-ui-bundle.js"), ("/redoc", "/docs/assets/redoc.standalone.js")):
        page = client.get(url)
        assert page.status_code == 200 and script in page.text and "/openapi.json" in page.text
        assert "cdn" not in page.text and "https://" not in page.text  # nothing from elsewhere: the docs work offline
    for name, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon.png", "image/png"),
    ):
        asset = client.get(f"/docs/assets/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]


def test_page_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'id="drop"' in page.text and 'id="results"' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_text_image_and_composed_searches(client: TestClient, corpus: Corpus) -> None:
    composed = search(client, corpus.pictures[2].read_bytes(), text=CAPTIONS[1], top_k=3)
    body = composed.json()
    assert body["mode"] == "composed-to-multimodal" and sources(composed)[0] == "grid/2-1"
    top = body["results"][0]
    assert top["score"] == pytest.approx(1.0, abs=1e-4) and top["rank"] == 1 and top["text"] == CAPTIONS[1]
    assert top["image_url"] == f"/api/items/{corpus.id('grid/2-1')}/image"

    by_picture = search(client, corpus.pictures[3].read_bytes(), mode="image-to-image", top_k=2)
    assert by_picture.json()["mode"] == "image-to-image" and sources(by_picture)[0] == "lighthouse"

    notes = search(client, text=NOTES[1], mode="text-to-text", top_k=3)
    assert sources(notes)[0] == "notes/1" and all(r["image_url"] is None for r in notes.json()["results"])
    assert set(sources(notes)) <= {"notes/0", "notes/1", "notes/2"}


def test_filter_and_hybrid(client: TestClient) -> None:
    assert sources(search(client, text="anything", filter=json.dumps({"tags": "coast"}))) == ["lighthouse"]
    assert sources(search(client, text="anything", filter="tags=coast")) == ["lighthouse"]
    either = sources(search(client, text="anything", filter="tags=coast, tags=note", mode="text-to-text"))
    assert sorted(either) == ["notes/0", "notes/1", "notes/2"]
    repeated = {"text": "x", "filter": ["tags=grid", '{"source": ["grid/0-0", "lighthouse"]}']}
    assert sources(client.post("/api/search", data=repeated)) == ["grid/0-0"]
    hybrid = search(client, text="lighthouse keeper lamp", mode="text-to-text", hybrid="true", top_k=1)
    assert sources(hybrid) == ["notes/0"]


def test_text_items_come_back_from_a_default_search_and_by_modality(client: TestClient) -> None:
    everything = search(client, text=NOTES[2], top_k=20)
    assert everything.json()["mode"] == "text-to-any" and sources(everything)[0] == "notes/2"
    texts = search(client, text=NOTES[2], filter="modality=text", top_k=20)
    assert sources(texts)[0] == "notes/2" and {r["metadata"]["modality"] for r in texts.json()["results"]} == {"text"}
    assert sources(search(client, text="x", filter='{"modality": "image"}')) == ["uncaptioned"]
    refused = search(client, text="x", mode="text-to-multimodal", filter="modality=text")
    message = refused.json()["message"]
    assert refused.status_code == 400 and "set the mode field to text-to-any or text-to-text" in message
    assert "MetadataFilters" not in message


def test_blend_passes_through_to_one_store_search(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.milvus import MilvusStore

    searched = []
    original = MilvusStore.hybrid_search

    def spy(self: MilvusStore, *args: Any, **kwargs: Any) -> Any:
        searched.append(dict(kwargs["blend"].weights))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MilvusStore, "hybrid_search", spy)
    found = search(client, text="lighthouse keeper lamp", mode="text-to-text", blend="fused=1,bm25=3", min_score=0.2)
    body = found.json()
    assert sources(found)[0] == "notes/0" and searched == [{"fused": 0.25, "bm25": 0.75}]
    assert body["blend"] == {"weights": {"fused": 0.25, "bm25": 0.75}, "fusion": "weighted", "tuned": False}
    assert body["score_scale"] == "weighted" and all(0.2 <= r["score"] < 1 for r in body["results"])
    asked = client.post(
        "/api/ask", data={"text": "which lamp?", "blend": "image,bm25", "fusion": "rrf", "top_k": 2}
    ).json()
    assert (
        asked["blend"]["fusion"] == "rrf"
        and asked["score_scale"] == "rrf"
        and searched[-1] == {"image": 0.5, "bm25": 0.5}
    )
    plain = search(client, text="anything", blend="").json()
    assert plain["blend"] is None and plain["score_scale"] == "cosine"
    assert len(plain["results"]) == 10  # RAG_TOP_K, as for `rag search`


def test_duplicates_are_merged_and_counted(client: TestClient, corpus: Corpus) -> None:
    picture = corpus.pictures[4].read_bytes()  # copies/a and copies/b: the same picture and caption
    merged = search(client, picture, text=COPIES, top_k=3).json()
    assert merged["merged"] == 1 and sum(len(r["duplicates"]) for r in merged["results"]) == 1
    every = search(client, picture, text=COPIES, top_k=3, dedup="false").json()
    assert every["merged"] == 0 and {"copies/a", "copies/b"} <= {r["source"] for r in every["results"]}


@pytest.mark.parametrize(
    "form, message",
    [
        ({"blend": "fused=1,colour=1"}, "unknown signal(s) 'colour'"),
        ({"blend": "fused=-1"}, "weights must be 0 or more"),
        ({"blend": "fused=0,image=0"}, "every weight in the blend is 0"),
        ({"blend": "fused=2,image=1", "fusion": "rrf"}, "takes no weights"),
        ({"blend": "fused,bm25", "hybrid": "true"}, "not both"),
        ({"hybrid": "true", "min_score": "0.5"}, "means nothing on RRF"),
        ({"min_score": "3"}, "outside the cosine scale"),
    ],
)
def test_bad_blends_are_refused(client: TestClient, form: dict[str, str], message: str) -> None:
    response = search(client, text="x", **form)
    assert response.status_code == 400 and message in response.json()["message"]


def test_ask_without_an_llm_returns_the_ranked_evidence(client: TestClient, corpus: Corpus) -> None:
    picture = {"image": ("q.png", corpus.pictures[1].read_bytes(), "image/png")}
    response = client.post("/api/ask", data={"text": CAPTIONS[0], "top_k": 2}, files=picture)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "no_llm"
    assert body["answer"].startswith("No LLM is configured")
    assert [c["rank"] for c in body["citations"]] == [1, 2]
    assert body["citations"][0]["source"] == "grid/1-0" and body["citations"][0]["image_url"]


def test_ask_with_an_llm_cites_items(make_client: Any, corpus: Corpus) -> None:
    with FakeLLMServer(Reply("A red dress [1].")) as llm:
        client = make_client(llm_model="vision-test", llm_base_url=llm.url)
        assert client.get("/api/stats").json()["llm"] == "vision-test"
        form = {"text": "what hangs there?", "filter": '{"tags": "grid"}', "top_k": 2}
        body = client.post("/api/ask", data=form).json()
    assert body["status"] == "answered" and body["answer"] == "A red dress [1]."
    assert [c["cited"] for c in body["citations"]] == [True, False]
    assert len(llm.requests) == 1


def test_clients_see_names_and_ids_not_the_servers_paths(
    make_client: Any, settings: Settings, tiny_base, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLES, corpus / "photos")
    with MilvusStore.open(settings.milvus_uri, "paths", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([corpus], cache_dir=tmp_path / "cache"), tiny_base, store)
    hidden = make_client(collection="paths")
    responses = [
        search(hidden, text="a white carriage"),
        hidden.post("/api/ask", data={"text": "Which carriage?"}),
        hidden.get("/api/stats"),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        assert str(tmp_path) not in response.text and settings.milvus_uri not in response.text
    results = responses[0].json()["results"]
    assert {r["source"] for r in results} == {f"photos/{p.name}" for p in SAMPLES.glob("*.[jp][pn]g")}
    assert all(r["image"] is None and r["metadata"]["source"] == r["source"] for r in results)
    assert all(key not in r["metadata"] for r in results for key in ("file_path", "caption_path"))
    assert hidden.get(results[0]["image_url"]).content == (corpus / results[0]["source"]).read_bytes()
    answer = responses[1].json()["answer"].splitlines()
    assert answer[0].startswith("No LLM is configured") and answer[1].startswith("[1] photos/")

    shown = make_client(collection="paths", server_show_paths=True)
    first = search(shown, text="a white carriage", top_k=1).json()["results"][0]
    assert first["source"] == first["image"] == first["metadata"]["file_path"] == str(corpus / results[0]["source"])
    assert shown.get("/api/stats").json()["uri"] == settings.milvus_uri


# -- item images -----------------------------------------------------------------------------


def test_item_images_are_served_by_id(client: TestClient, corpus: Corpus) -> None:
    item = corpus.items["lighthouse"]
    response = client.get(f"/api/items/{item.id}/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == Path(item.image.uri).read_bytes()


@pytest.mark.parametrize(
    "item_id",
    [
        "0" * 32,
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "..",
        "%2e%2e",
        "%22%20or%20id%20!%3D%20%22",  # `" or id != "`: a filter injection, escaped by the store
        "x" * 300,
    ],
)
def test_image_route_refuses_unknown_ids_and_paths(client: TestClient, item_id: str) -> None:
    response = client.get(f"/api/items/{item_id}/image")
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "not_found" and "root:" not in response.text


def test_image_route_refuses_text_only_items(client: TestClient, corpus: Corpus) -> None:
    response = client.get(f"/api/items/{corpus.id('notes/0')}/image")
    assert response.status_code == 404 and "with an image" in response.json()["message"]


# -- auth ------------------------------------------------------------------------------------


def test_token_is_checked_on_every_api_route(make_client: Any, corpus: Corpus) -> None:
    client = make_client(server_token="s3cret-token", server_auth_max_failures=100)
    item = corpus.items["lighthouse"].id
    calls = [
        ("get", "/api/stats", {}),
        ("post", "/api/search", {"data": {"text": "x"}}),
        ("post", "/api/ask", {"data": {"text": "x"}}),
        ("post", "/api/ingest", {"files": {"files": ("a.png", png_bytes(), "image/png")}}),
        ("get", "/api/ingest", {}),
        ("get", "/api/ingest/abc", {}),
        ("get", f"/api/items/{item}/image", {}),
    ]
    for method, path, kwargs in calls:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LXRva2Vu"}):
            response = getattr(client, method)(path, headers=headers, **kwargs)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"] == "unauthorized" and response.headers["www-authenticate"] == "Bearer"
    good = {"Authorization": "Bearer s3cret-token"}
    assert client.get("/api/stats", headers=good).status_code == 200
    assert client.get(f"/api/items/{item}/image", headers=good).status_code == 200
    assert client.get("/api/ingest", headers=good).json() == []  # the refused upload queued nothing
    for open_path in ("/", "/health", "/openapi.json", "/static/app.js"):
        assert client.get(open_path).status_code == 200


# -- limits and errors -----------------------------------------------------------------------


def test_upload_size_and_pixel_limits(make_client: Any, settings: Settings) -> None:
    client = make_client(
        server_max_upload_bytes=4000, server_max_image_pixels=100 * 100, server_max_request_bytes=20_000
    )
    noisy = io.BytesIO()
    Image.frombytes("RGB", (60, 60), random.Random(0).randbytes(60 * 60 * 3)).save(noisy, format="PNG")
    assert len(noisy.getvalue()) > 4000
    cases = [
        (noisy.getvalue(), 413, "4000-byte limit"),
        (png_bytes((101, 100)), 413, "10000-pixel limit"),
        (bomb_png(30_000, 30_000), 413, "900000000-pixel image exceeds the 10000-pixel limit"),  # past Pillow's own
        (bomb_png(200, 200), 413, "10000-pixel limit"),
        (b"%PDF-1.4 not an image", 400, "not an image"),
        (png_bytes()[:60], 400, "corrupt or truncated"),
    ]
    for data, status, message in cases:
        response = search(client, data, text="x")
        assert response.status_code == status and message in response.json()["message"], response.text
    too_big = client.post("/api/search", data={"text": "x" * 30_000})
    assert too_big.status_code == 413 and too_big.json()["message"].endswith("bytes, over the 20000-byte limit")
    chunks = iter([b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n'] + [b"x" * 1000] * 30)
    streamed = client.post("/api/search", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413 and streamed.json()["message"] == "the request body is over the 20000-byte limit"
    ingest = client.post("/api/ingest", files=[("files", ("big.png", noisy.getvalue(), "image/png"))])
    assert ingest.status_code == 413 and "big.png" in ingest.json()["message"]
    assert search(client, png_bytes((100, 100)), text="x").status_code == 200


def test_errors_are_json_with_a_clear_message(client: TestClient, settings: Settings, tiny_base, monkeypatch) -> None:
    expectations = [
        (client.get("/api/nothing-here"), 404, "not_found", "GET /api/nothing-here"),
        (client.delete("/api/stats"), 405, "method_not_allowed", "DELETE /api/stats"),
        (search(client, text="x", top_k=0), 422, "invalid_request", "top_k"),
        (search(client, text="x", mode="sideways"), 422, "invalid_request", "mode"),
        (search(client, text="x", filter="{nope"), 400, "bad_request", "not valid JSON"),
        (search(client, text="x", filter="[1]"), 400, "bad_request", "a JSON filter must be an object"),
        (search(client, text="x", filter="tags"), 400, "bad_request", "write key=value pairs"),
        (search(client, text="x", filter='{"tags": {"~": 1}}'), 400, "bad_request", "unknown filter operator"),
        (search(client, text="  "), 400, "bad_request", "neither text (the text field) nor an image (the image field)"),
        (
            search(client, mode="text-to-text", image=png_bytes()),
            400,
            "bad_request",
            "needs query text (the text field)",
        ),
        (search(client, text="x", mode="image-to-image"), 400, "bad_request", "needs a query image (the image field)"),
        (client.post("/api/ask", data={"text": ""}), 422, "invalid_request", "text"),
        (client.get("/api/ingest/unknown"), 404, "not_found", "no ingest job"),
    ]
    for response, status, code, message in expectations:
        body = response.json()
        assert (response.status_code, body["error"]) == (status, code), body
        assert message in body["message"], body

    from rag.server import Service

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(Service, "search", broken)
    with TestClient(create_app(settings, encoder=tiny_base), raise_server_exceptions=False) as crashing:
        response = search(crashing, text="x")
    assert response.status_code == 500
    message = "internal error (RuntimeError); the server log has details"
    request_id = response.headers["X-Request-ID"]
    assert response.json() == {"error": "internal_error", "message": message, "request_id": request_id}


# -- ingestion -------------------------------------------------------------------------------


def wait_for(client: TestClient, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/ingest/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"ingest job {job_id} did not finish in {timeout} s")


def test_ingest_uploads_in_the_background(make_client: Any, tmp_path: Path) -> None:
    client = make_client(create=True, collection="uploads", data_dir=tmp_path / "data")
    pictures = [png_bytes((48, 40 + i), (40 * i, 90, 200 - 30 * i)) for i in range(3)]
    files = [("files", (f"../../photo {i}.png", data, "image/png")) for i, data in enumerate(pictures)]
    files.append(("files", ("notes.bin", b"not a picture", "application/octet-stream")))
    captions = ["a first photo", "a second photo", "", "ignored"]
    accepted = client.post("/api/ingest", files=files, data={"captions": captions, "tags": "upload, test"})
    assert accepted.status_code == 202 and accepted.headers["location"] == f"/api/ingest/{accepted.json()['id']}"
    job = wait_for(client, accepted.json()["id"])
    assert (job["status"], job["inputs"], job["added"], job["skipped"]) == ("done", 3, 3, 1)
    kinds = sorted((p["kind"], p["source"]) for p in job["problems"])
    assert kinds == [("missing_caption", "upload:photo 2.png"), ("not_an_image", "upload:notes.bin")]

    uploads = tmp_path / "data" / "uploads"
    saved = sorted(p.relative_to(uploads).as_posix() for p in uploads.rglob("*.*"))
    folders = {Path(name).parent.name for name in saved}
    assert len(folders) == 3 and all(len(folder) == 8 for folder in folders)  # one folder per file name
    assert sorted(Path(name).name for name in saved) == sorted(
        f"photo {i}.{s}" for i in range(3) for s in ("json", "png")
    )
    assert not (tmp_path / "photo 0.png").exists()

    found = client.post("/api/search", data={"text": "x", "filter": '{"tags": "upload"}'}).json()["results"]
    assert sorted(r["text"] for r in found) == ["", "a first photo", "a second photo"]
    assert {r["metadata"]["upload_name"] for r in found} == {"photo 0.png", "photo 1.png", "photo 2.png"}
    assert {r["source"] for r in found} == {"photo 0.png", "photo 1.png", "photo 2.png"}  # named as uploaded
    assert {r["name"] for r in found} == {r["source"] for r in found}  # one name, as in Python and --json
    one = client.post("/api/search", data={"text": "x", "filter": "source=photo 1.png"}).json()["results"]
    assert [r["name"] for r in one] == ["photo 1.png"]
    image = client.get(found[0]["image_url"])
    assert image.status_code == 200 and image.content in pictures

    resent = client.post("/api/ingest", files=files[:3], data={"captions": captions[:3], "tags": "upload, test"})
    again = wait_for(client, resent.json()["id"])
    assert (again["added"], again["unchanged"]) == (0, 3)
    renamed = client.post("/api/ingest", files=files[:1], data={"captions": ["renamed"]})
    recaptioned = wait_for(client, renamed.json()["id"])
    assert (recaptioned["added"], recaptioned["replaced"]) == (0, 1)
    assert [j["id"] for j in client.get("/api/ingest").json()][0] == recaptioned["id"]
    assert client.get("/api/stats").json()["count"] == 3

    for path in uploads.rglob("*.png"):
        path.unlink()
    gone = client.get(found[0]["image_url"])
    assert gone.status_code == 404 and "gone from this server" in gone.json()["message"]


def test_ingest_uploaded_documents_named_by_their_file_names(make_client: Any, tmp_path: Path) -> None:
    client = make_client(create=True, collection="docs", data_dir=tmp_path / "data")
    files = [
        ("files", ("notes.txt", b"The depot opens at dawn.\n\nTrains leave at noon.", "text/plain")),
        ("files", ("guide.md", b"# Guide\n\nRead the signals.\n", "text/markdown")),
    ]
    job = wait_for(client, client.post("/api/ingest", files=files).json()["id"])
    assert (job["status"], job["added"], job["skipped"]) == ("done", 2, 0)
    query = {"text": "x", "mode": "text-to-text", "filter": "source=guide.md"}  # by its file name
    found = client.post("/api/search", data=query).json()["results"]
    assert [(r["name"], r["source"], r["text"]) for r in found] == [
        ("guide.md#guide", "guide.md#guide", "Guide\n\nRead the signals.")
    ]


def test_ingest_a_manifest_confined_to_the_upload_folder(make_client: Any, tmp_path: Path) -> None:
    client = make_client(create=True, collection="manifests", data_dir=tmp_path / "data")
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(colour=(1, 2, 3)))
    inline = "data:image/png;base64," + __import__("base64").b64encode(png_bytes(colour=(9, 9, 9))).decode()
    rows = [
        {"text": "a text-only row", "tags": ["m"]},
        {"image": inline, "text": "an inline picture", "tags": ["m"]},
        {"image": str(secret), "text": "an absolute path"},
        {"image": "../../secret.png", "text": "a relative escape"},
        {"image": "http://127.0.0.1:9/x.png", "text": "a URL, fetching off"},
    ]
    manifest = "".join(json.dumps(row) + "\n" for row in rows).encode()
    accepted = client.post("/api/ingest", files=[("files", ("rows.jsonl", manifest, "application/x-ndjson"))])
    job = wait_for(client, accepted.json()["id"])
    assert (job["status"], job["added"], job["skipped"]) == ("done", 2, 3)
    assert sorted(p["kind"] for p in job["problems"]) == ["bad_reference", "bad_reference", "url_disabled"]
    assert sorted(p["source"] for p in job["problems"]) == [
        "upload:rows.jsonl:3",
        "upload:rows.jsonl:4",
        "upload:rows.jsonl:5",
    ]
    assert str(tmp_path / "data") not in json.dumps(job)  # where the server keeps uploads is its own business
    assert client.get("/api/stats").json()["count"] == 2
    [picture] = client.post("/api/search", data={"text": "x", "mode": "text-to-multimodal"}).json()["results"]
    assert picture["text"] == "an inline picture"
    assert client.get(picture["image_url"]).content == png_bytes(colour=(9, 9, 9))


def test_a_compiling_server_compiles_its_query_shapes_at_start(settings: Settings, monkeypatch) -> None:
    compiled_for = []

    def fake_compile(function, **options):  # records each compiled call instead of running inductor
        def run(*inputs):
            compiled_for.append((function.__name__, tuple(t.shape[0] for t in inputs)))
            return function(*inputs)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    encoder = load_tiny("base")
    encoder.runtime = replace(encoder.runtime, compile=True)
    with TestClient(create_app(settings, encoder=encoder)):
        assert {name for name, _ in compiled_for} == {"embed_text", "embed_fused"}  # before any request


def test_a_composed_query_on_an_encoder_without_fused_vectors_is_a_client_error(tmp_path) -> None:
    from connectors.milvus import EncoderInfo, MilvusStore
    from connectors.sources import open_sources
    from rag.embeddings.clip import CLIPEncoder
    from rag.ingest import ingest
    from tests.embeddings.tiny_transformers import build_clip

    clip = CLIPEncoder.from_pretrained(build_clip(tmp_path / "clip"), device="cpu", dtype="float32")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "red.png").write_bytes(png_bytes())
    db = tmp_path / "db" / "milvus.db"
    with MilvusStore.open(db, "clipkb", encoder_info=EncoderInfo.of(clip)) as store:
        ingest(open_sources([folder]), clip, store)
    settings = Settings(milvus_uri=str(db), collection="clipkb", data_dir=tmp_path / "data")
    with TestClient(create_app(settings, encoder=clip)) as client:
        response = search(client, image=png_bytes(), text="in blue")
    assert response.status_code == 400, response.text
    assert "no joint image+text embedding" in response.json()["message"]
