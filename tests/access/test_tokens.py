"""Tokens kept hashed under the data folder: shown once, checked, listed without secrets, revoked at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.access import Principal, Scope, TokenError, TokenStore
from rag.access.audit import AuditLog


def test_a_token_is_stored_as_a_salted_hash_and_checked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    record, token = store.add("alice", "write", "team-a")
    _, other = store.add("bob", Scope.READ)
    kept = (tmp_path / "tokens.json").read_text()
    secret = token.split("_", 2)[2]
    assert secret not in kept and token not in kept
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    rows = json.loads(kept)["tokens"]
    assert [r["name"] for r in rows] == ["alice", "bob"]
    assert len({r["salt"] for r in rows}) == 2 and all(len(r["hash"]) == 64 for r in rows)
    assert store.verify(token) == Principal("alice", Scope.WRITE, "team-a")
    assert store.verify(other) == Principal("bob", Scope.READ, None)
    fresh = TokenStore(tmp_path)  # another process: reads the file, checks the hash
    assert fresh.verify(token) == Principal("alice", Scope.WRITE, "team-a")


@pytest.mark.parametrize(
    "attempt",
    ["", "rag", "rag_", "nope", "rag_unknownid_secret", "Bearer x", "\x00", "rag_{id}_", "rag_{id}_wrong-secret"],
)
def test_wrong_and_malformed_tokens_are_refused(tmp_path: Path, attempt: str) -> None:
    store = TokenStore(tmp_path)
    record, token = store.add("alice", "admin")
    assert store.verify(attempt.format(id=record.id)) is None
    assert store.verify(token[:-1]) is None and store.verify(token + "x") is None
    assert store.verify(token) is not None


def test_revocation_counts_at_once_in_another_process(tmp_path: Path) -> None:
    server = TokenStore(tmp_path)
    _, alice = TokenStore(tmp_path).add("alice", "read")
    _, bob = TokenStore(tmp_path).add("bob", "read")
    assert server.verify(alice) is not None and server.verify(bob) is not None  # now remembered in memory
    TokenStore(tmp_path).revoke("alice")  # `rag tokens revoke` in another process
    assert server.verify(alice) is None
    assert server.verify(bob) == Principal("bob", Scope.READ)
    # A new token under the old name is another token: the old one stays refused.
    _, again = TokenStore(tmp_path).add("alice", "read")
    assert server.verify(alice) is None and server.verify(again) is not None


def test_listing_shows_no_secret_and_records_last_use(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    _, token = store.add("alice", "read", "t1")
    store.add("bob", "admin")
    [alice, bob] = store.listing()
    assert alice == {"name": "alice", "scope": "read", "tenant": "t1", "created": alice["created"], "last_used": None}
    assert bob["scope"] == "admin" and bob["tenant"] is None
    store.verify(token)
    [alice, bob] = TokenStore(tmp_path).listing()
    assert alice["last_used"] is not None and bob["last_used"] is None
    assert token.split("_", 2)[2] not in (tmp_path / "tokens-last-use.json").read_text()


@pytest.mark.parametrize(
    ("name", "scope", "tenant", "problem"),
    [
        ("alice", "root", None, "not one of: read, write, admin"),
        ("", "read", None, "token name"),
        ("a b", "read", None, "token name"),
        ("alice", "read", "x' or tenant != '", "is not a valid name"),
        ('t"1', "read", 't"1', "token name"),
        ("alice", "read", 'a" || tenant like "%', "is not a valid name"),
        ("alice", "read", "", "is not a valid name"),
        ("alice", "read", "x" * 129, "is not a valid name"),
    ],
)
def test_bad_names_scopes_and_tenants_are_refused(
    tmp_path: Path, name: str, scope: str, tenant: str | None, problem: str
) -> None:
    with pytest.raises(TokenError, match=problem):
        TokenStore(tmp_path).add(name, scope, tenant)
    assert TokenStore(tmp_path).listing() == []


def test_names_are_unique_and_revoking_an_unknown_name_says_which_exist(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.add("alice", "read")
    with pytest.raises(TokenError, match="exists"):
        store.add("alice", "admin")
    with pytest.raises(TokenError, match=r"no token named 'bob' \(tokens: alice\)"):
        store.revoke("bob")
    assert [r["scope"] for r in store.listing()] == ["read"]


def test_a_damaged_tokens_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    (tmp_path / "tokens.json").write_text("{not json")
    with pytest.raises(TokenError, match="cannot be read"):
        TokenStore(tmp_path).verify("rag_x_y")


def test_scopes_are_ordered() -> None:
    assert Scope.ADMIN.allows(Scope.WRITE) and Scope.WRITE.allows(Scope.READ) and Scope.READ.allows(Scope.READ)
    assert not Scope.READ.allows(Scope.WRITE) and not Scope.WRITE.allows(Scope.ADMIN)


def test_audit_log_appends_json_lines_and_keeps_reads_only_when_asked(tmp_path: Path) -> None:
    quiet, loud = AuditLog(tmp_path), AuditLog(tmp_path, reads=True)
    alice = Principal("alice", Scope.WRITE, "t1")
    quiet.record("ingest", alice, files=["a.png"], added=1)
    quiet.record("search", alice, text="x")
    loud.record("search", alice, text="y")
    before = (tmp_path / "audit.jsonl").read_bytes()
    quiet.record("token_revoke", None, name="bob")
    after = (tmp_path / "audit.jsonl").read_bytes()
    assert after.startswith(before)  # appended, never rewritten
    lines = [json.loads(line) for line in after.decode().splitlines()]
    assert [(line["action"], line["token"], line["tenant"]) for line in lines] == [
        ("ingest", "alice", "t1"),
        ("search", "alice", "t1"),
        ("token_revoke", None, None),
    ]
    assert lines[0]["files"] == ["a.png"] and lines[0]["added"] == 1 and lines[1]["text"] == "y"
    assert all(line["time"].endswith("+00:00") for line in lines)
