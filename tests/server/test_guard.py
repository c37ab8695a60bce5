"""Browser safety: a page on another site cannot change anything (Origin / Sec-Fetch-Site), and a page on a name
that resolves here (DNS rebinding) is refused by its Host header; with and without a token. Clients that are not
browsers (no Origin, no Sec-Fetch-Site) and the server's own page go through."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from connectors.milvus import EncoderInfo, MilvusStore
from rag.server import create_app
from rag.server.guard import bound_hosts
from rag.settings import Settings

OWN = "http://127.0.0.1:8000"
EVIL = "http://evil.example"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 200, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def make(settings: Settings, tiny_base, tmp_path: Path) -> Iterator[Any]:
    """An app bound (as ``serve`` binds it) to 127.0.0.1:8000, over a collection of its own."""
    opened: list[TestClient] = []

    def client(**overrides: Any) -> TestClient:
        changed = Settings(**{**settings.model_dump(), "collection": "guarded", "data_dir": tmp_path, **overrides})
        MilvusStore.open(changed.milvus_uri, "guarded", encoder_info=EncoderInfo.of(tiny_base)).close()
        app = create_app(changed, encoder=tiny_base, hosts=bound_hosts("127.0.0.1", changed.server_allowed_hosts))
        test_client = TestClient(app, base_url=OWN).__enter__()
        opened.append(test_client)
        return test_client

    yield client
    for test_client in opened:
        test_client.__exit__(None, None, None)


def _upload(client: TestClient, headers: dict[str, str]) -> Any:
    return client.post("/api/ingest", files=[("files", ("a.png", _png(), "image/png"))], headers=headers)


def test_a_cross_site_upload_is_refused_and_adds_nothing(make) -> None:
    client = make()
    jobs_before = client.get("/api/ingest").json()
    count_before = client.get("/api/stats").json()["count"]
    for headers in (
        {"Origin": EVIL},
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
        {"Origin": "null"},  # a sandboxed frame or a file: page
        {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
    ):
        refused = _upload(client, headers)
        assert refused.status_code == 403, headers
        assert refused.json()["error"] == "forbidden" and "cannot change anything here" in refused.json()["message"]
    assert client.get("/api/ingest").json() == jobs_before
    assert client.get("/api/stats").json()["count"] == count_before


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts: not a browser
        {"Origin": OWN},
        {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
def test_the_own_page_and_non_browser_clients_may_write(make, headers: dict[str, str]) -> None:
    accepted = _upload(make(), headers)
    assert accepted.status_code == 202, accepted.text


def test_reading_is_not_refused_and_searches_from_another_site_are(make) -> None:
    client = make()
    assert client.get("/api/stats", headers={"Origin": EVIL}).status_code == 200
    assert client.post("/api/search", data={"text": "x"}, headers={"Origin": EVIL}).status_code == 403
    assert client.post("/api/search", data={"text": "x"}, headers={"Origin": OWN}).status_code == 200


def test_an_allowed_origin_may_write_and_reads_the_reply(make) -> None:
    client = make(server_allowed_origins="https://app.example, https://other.example:8443")
    accepted = _upload(client, {"Origin": "https://app.example"})
    assert accepted.status_code == 202
    assert accepted.headers["access-control-allow-origin"] == "https://app.example"
    assert _upload(client, {"Origin": "https://other.example:8443"}).status_code == 202
    assert _upload(client, {"Origin": "https://app.example.evil"}).status_code == 403


def test_a_token_does_not_let_a_cross_site_request_through(make) -> None:
    client = make(server_token="s3cret")
    bearer = {"Authorization": "Bearer s3cret"}
    assert _upload(client, {**bearer, "Origin": EVIL}).status_code == 403
    assert _upload(client, bearer).status_code == 202
    assert _upload(client, {"Origin": OWN}).status_code == 401


def test_an_unknown_host_is_refused_dns_rebinding(make) -> None:
    client = make()
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io:8000"):
        rebound = client.get("/api/stats", headers={"Host": host})
        assert rebound.status_code == 400 and "not a name of this server" in rebound.json()["message"]
        # the attacker's page is same-origin with itself: the Host check is what stops it
        assert _upload(client, {"Host": host, "Origin": f"http://{host}"}).status_code == 400
    assert client.get("/api/stats", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/health", headers={"Host": "[::1]:8000"}).status_code == 200
    named = make(server_allowed_hosts="rag.internal")
    assert named.get("/api/stats", headers={"Host": "rag.internal"}).status_code == 200


def test_bound_hosts() -> None:
    assert bound_hosts("127.0.0.1") == ["127.0.0.1", "::1", "localhost"]
    assert bound_hosts("10.0.0.5") == ["10.0.0.5"]
    assert bound_hosts("10.0.0.5", ["rag.internal"]) == ["10.0.0.5", "rag.internal"]
    assert bound_hosts("0.0.0.0") is None  # every interface: reached by names this machine cannot know
    assert bound_hosts("::", ["Rag.Internal"]) == ["rag.internal", "localhost", "127.0.0.1", "::1"]
