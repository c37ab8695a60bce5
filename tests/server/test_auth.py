"""Scoped tokens on the HTTP API: every scope against every route, refusals before the body is read, malformed
headers, revocation at once, the token routes, the brute-force guard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag.access import Scope, TokenStore
from rag.server import create_app
from rag.server.auth.limiter import FailureLimiter
from rag.settings import Settings
from tests.retrieval.corpus import Corpus

#: The scope every /api route needs. A route missing here is held to the default rule (GET: read, else write).
EXPECTED = {
    ("GET", "/api/stats"): Scope.READ,
    ("POST", "/api/search"): Scope.READ,
    ("POST", "/api/ask"): Scope.READ,
    ("POST", "/api/ask/stream"): Scope.READ,
    ("GET", "/api/items/{item_id}/image"): Scope.READ,
    ("POST", "/api/ingest"): Scope.WRITE,
    ("GET", "/api/ingest"): Scope.WRITE,
    ("GET", "/api/ingest/{job_id}"): Scope.WRITE,
    ("DELETE", "/api/items"): Scope.WRITE,
    ("GET", "/api/tokens"): Scope.ADMIN,
    ("POST", "/api/tokens"): Scope.ADMIN,
    ("DELETE", "/api/tokens/{name}"): Scope.ADMIN,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth")


@pytest.fixture(scope="module")
def tokens(data_dir: Path) -> dict[Scope, str]:
    store = TokenStore(data_dir)
    return {scope: store.add(f"a-{scope.value}", scope)[1] for scope in Scope}


@pytest.fixture(scope="module")
def client(settings: Settings, data_dir: Path, tokens: dict[Scope, str], tiny_base) -> Iterator[TestClient]:
    changed = Settings(**{**settings.model_dump(), "data_dir": data_dir, "server_auth_max_failures": 1000})
    with TestClient(create_app(changed, encoder=tiny_base)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, methods in paths.items() if path.startswith("/api/") for method in methods]


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    """A request that does nothing once past the check: a malformed body, or an id that does not exist."""
    concrete = path.replace("{item_id}", "no-such-item").replace("{job_id}", "nojob").replace("{name}", "nobody")
    concrete = concrete.replace("{", "").replace("}", "")
    return client.request(method, concrete, headers={**headers, "Content-Type": "application/json"}, content=b"{")


def test_every_scope_on_every_route(client: TestClient, tokens: dict[Scope, str]) -> None:
    routes = api_routes(client)
    assert set(EXPECTED) - {("DELETE", "/api/items")} <= set(routes)
    for method, path in routes:
        needed = EXPECTED.get((method, path), Scope.READ if method == "GET" else Scope.WRITE)
        response = call(client, method, path, {})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthorized" and response.headers["www-authenticate"] == "Bearer"
        for scope, token in tokens.items():
            response = call(client, method, path, bearer(token))
            if scope.allows(needed):
                assert response.status_code not in (401, 403, 500), (method, path, scope, response.text)
            else:
                assert response.status_code == 403, (method, path, scope)
                body = response.json()
                assert (body["error"], body["scope"]) == ("forbidden", needed.value)
                assert f"the {needed.value!r} scope" in body["message"] and f"'a-{scope.value}'" in body["message"]


def test_the_scope_is_checked_before_the_body_is_read(client: TestClient, tokens: dict[Scope, str]) -> None:
    garbage = {"Content-Type": "multipart/form-data; boundary=x", **bearer(tokens[Scope.READ])}
    assert client.post("/api/ingest", headers=garbage, content=b"--y\r\nbroken").status_code == 403
    assert client.post("/api/tokens", headers=bearer(tokens[Scope.WRITE]), content=b"[not json").status_code == 403
    for query in ("", "?filter=", "?filter={not json", "?filter=source%3D%27%20or%20%271"):
        assert client.delete("/api/items" + query, headers=bearer(tokens[Scope.READ])).status_code == 403, query
    # The same malformed bodies with the scope they need: now the body is read, and refused as malformed.
    garbage["Authorization"] = f"Bearer {tokens[Scope.WRITE]}"
    assert client.post("/api/ingest", headers=garbage, content=b"--y\r\nbroken").status_code in (400, 422)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Basic YWxpY2U6c2VjcmV0",
        "Token abc",
        "bearer rag_",
        "Bearer a b c",
        "Bearer rag_\u00e9\u00e8_x",
        "Bearer " + "x" * 10_000,
        "Bearer\tabc",
        "",
    ],
)
def test_malformed_authorization_headers_get_401(client: TestClient, header: str) -> None:
    response = client.get("/api/stats", headers={"Authorization": header.encode("latin-1")})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_token_routes_add_list_and_revoke_at_once(client: TestClient, tokens: dict[Scope, str], data_dir: Path) -> None:
    admin = bearer(tokens[Scope.ADMIN])
    made = client.post("/api/tokens", headers=admin, json={"name": "carol", "scope": "write", "tenant": "t-1"})
    assert made.status_code == 201, made.text
    carol = made.json()["token"]
    assert made.json()["tenant"] == "t-1" and carol.startswith("rag_")
    assert client.get("/api/ingest", headers=bearer(carol)).status_code == 200
    listed = client.get("/api/tokens", headers=admin).json()
    assert {"a-read", "a-write", "a-admin", "carol"} <= {t["name"] for t in listed}
    assert carol not in json.dumps(listed) and all("hash" not in t and "salt" not in t for t in listed)
    assert next(t for t in listed if t["name"] == "carol")["last_used"] is not None
    refused = client.post("/api/tokens", headers=admin, json={"name": "dave", "scope": "read", "tenant": "a' or '1"})
    assert refused.status_code == 400 and "not a valid name" in refused.json()["message"]
    assert client.delete("/api/tokens/carol", headers=admin).status_code == 200
    assert client.get("/api/ingest", headers=bearer(carol)).status_code == 401  # at once, same server
    # Revoked by another process (`rag tokens revoke`): refused from the next request.
    _, erin = TokenStore(data_dir).add("erin", "read")
    assert client.get("/api/stats", headers=bearer(erin)).status_code == 200
    TokenStore(data_dir).revoke("erin")
    assert client.get("/api/stats", headers=bearer(erin)).status_code == 401
    audit = [json.loads(line) for line in (data_dir / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["token"], a["name"]) for a in audit] == [
        ("token_add", "a-admin", "carol"),
        ("token_revoke", "a-admin", "carol"),
    ]


def test_stats_say_what_the_token_allows(client: TestClient, tokens: dict[Scope, str]) -> None:
    shown = {scope: client.get("/api/stats", headers=bearer(token)).json() for scope, token in tokens.items()}
    assert [(s["scope"], s["can_upload"], s["can_delete"], s["tenant"]) for s in shown.values()] == [
        ("read", False, False, None),
        ("write", True, True, None),
        ("admin", True, True, None),
    ]


def test_the_server_token_is_an_admin_of_every_tenant_beside_stored_tokens(
    settings: Settings, tmp_path: Path, tiny_base
) -> None:
    _, reader = TokenStore(tmp_path).add("reader", "read")
    changed = Settings(**{**settings.model_dump(), "data_dir": tmp_path, "server_token": "s3cret"})
    with TestClient(create_app(changed, encoder=tiny_base)) as client:
        assert client.get("/api/tokens", headers=bearer("s3cret")).status_code == 200
        assert client.get("/api/stats", headers=bearer(reader)).status_code == 200
        assert client.get("/api/tokens", headers=bearer(reader)).status_code == 403
        assert client.get("/api/stats").status_code == 401


def test_no_token_configured_is_open_until_one_is_added(settings: Settings, tmp_path: Path, tiny_base) -> None:
    changed = Settings(**{**settings.model_dump(), "data_dir": tmp_path})
    with TestClient(create_app(changed, encoder=tiny_base)) as client:
        assert client.get("/api/stats").status_code == 200
        _, token = TokenStore(tmp_path).add("first", "read")  # added while the server runs
        assert client.get("/api/stats").status_code == 401
        assert client.get("/api/stats", headers=bearer(token)).status_code == 200


def test_no_auth_serves_openly_even_with_tokens(settings: Settings, tmp_path: Path, tiny_base) -> None:
    TokenStore(tmp_path).add("someone", "read")
    changed = Settings(**{**settings.model_dump(), "data_dir": tmp_path, "server_auth": False})
    with TestClient(create_app(changed, encoder=tiny_base)) as client:
        assert client.get("/api/stats").status_code == 200
        assert client.get("/api/tokens").status_code == 200


def test_ten_wrong_tokens_from_one_address_block_it_for_a_minute(settings: Settings, tmp_path: Path, tiny_base) -> None:
    _, good = TokenStore(tmp_path).add("good", "read")
    now = [1000.0]
    app = create_app(Settings(**{**settings.model_dump(), "data_dir": tmp_path}), encoder=tiny_base)
    app.state.access.limiter = FailureLimiter(10, clock=lambda: now[0])
    with TestClient(app, client=("10.0.0.1", 1)) as attacker, TestClient(app, client=("10.0.0.2", 1)) as other:
        for attempt in range(9):
            assert attacker.get("/api/stats", headers=bearer(f"rag_guess_{attempt}")).status_code == 401
        assert attacker.get("/api/stats", headers=bearer(good)).status_code == 200  # 9 failures: not blocked yet
        assert attacker.get("/api/stats", headers={"Authorization": "Basic x"}).status_code == 401  # the 10th
        blocked = attacker.get("/api/stats", headers=bearer(good))
        assert blocked.status_code == 429 and blocked.json()["error"] == "too_many_requests"
        assert blocked.headers["retry-after"] == "60"
        assert other.get("/api/stats", headers=bearer(good)).status_code == 200  # another address is not blocked
        now[0] += 59
        assert attacker.get("/api/stats", headers=bearer(good)).status_code == 429
        now[0] += 2
        assert attacker.get("/api/stats", headers=bearer(good)).status_code == 200
        # Failures spread over more than a minute do not add up.
        for _ in range(9):
            assert attacker.get("/api/stats", headers=bearer("wrong")).status_code == 401
            now[0] += 7
        assert attacker.get("/api/stats", headers=bearer("wrong")).status_code == 401
        assert attacker.get("/api/stats", headers=bearer(good)).status_code == 200


def test_the_page_and_health_stay_open(client: TestClient, corpus: Corpus) -> None:
    for open_path in ("/", "/health", "/openapi.json", "/static/app.js", "/docs"):
        assert client.get(open_path).status_code == 200, open_path
    schema = client.get("/openapi.json").json()
    assert "403" in schema["paths"]["/api/tokens"]["get"]["responses"]


def test_metrics_need_an_admin_token_once_tokens_exist(client: TestClient, tokens: dict[Scope, str]) -> None:
    assert client.get("/metrics").status_code == 401  # its counts span every tenant
    replies = {scope: client.get("/metrics", headers=bearer(token)) for scope, token in tokens.items()}
    assert {scope: reply.status_code for scope, reply in replies.items()} == {
        Scope.READ: 403,
        Scope.WRITE: 403,
        Scope.ADMIN: 200,
    }
    assert replies[Scope.READ].json()["scope"] == "admin" and "rag_ready" in replies[Scope.ADMIN].text


def test_an_upload_is_written_to_the_audit_log_with_its_files_and_counts(
    settings: Settings, tmp_path: Path, tiny_base
) -> None:
    from connectors.milvus import EncoderInfo, MilvusStore
    from tests.server.test_api import png_bytes, wait_for

    changed = Settings(**{**settings.model_dump(), "data_dir": tmp_path, "collection": "audited"})
    MilvusStore.open(changed.milvus_uri, changed.collection, encoder_info=EncoderInfo.of(tiny_base)).close()
    _, writer = TokenStore(tmp_path).add("writer", "write")
    with TestClient(create_app(changed, encoder=tiny_base), headers=bearer(writer)) as client:
        files = [("files", ("red.png", png_bytes(), "image/png")), ("files", ("bad.png", b"no", "image/png"))]
        accepted = client.post("/api/ingest", files=files, data={"captions": ["a red square", "x"]})
        assert accepted.status_code == 202
        job = wait_for(client, accepted.json()["id"])
        client.post("/api/search", data={"text": "red"})  # reads are not written unless asked
        assert client.delete("/api/items", params={"filter": "source=red.png"}).json() == {"deleted": 1}
    [line, deleted] = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (line["action"], line["token"], line["tenant"], line["job"]) == ("ingest", "writer", None, job["id"])
    assert (line["files"], line["status"], line["added"], line["skipped"]) == (["red.png", "bad.png"], "done", 1, 1)
    assert (deleted["action"], deleted["token"], deleted["filter"], deleted["deleted"]) == (
        "delete",
        "writer",
        ["source=red.png"],
        1,
    )


def test_reads_are_written_with_audit_reads(settings: Settings, tmp_path: Path, tiny_base) -> None:
    _, reader = TokenStore(tmp_path).add("reader", "read")
    changed = Settings(**{**settings.model_dump(), "data_dir": tmp_path, "server_audit_reads": True})
    with TestClient(create_app(changed, encoder=tiny_base), headers=bearer(reader)) as client:
        assert client.post("/api/search", data={"text": "a lighthouse", "top_k": 2}).status_code == 200
        assert client.post("/api/ask", data={"text": "which lighthouse?"}).status_code == 200
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["token"], a["text"]) for a in lines] == [
        ("search", "reader", "a lighthouse"),
        ("ask", "reader", "which lighthouse?"),
    ]
    assert lines[0]["results"] == 2 and lines[0]["tenant"] is None
