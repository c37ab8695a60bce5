"""`rag tokens add/list/revoke`: the token printed once on the last line, a listing without secrets, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rag.access import Principal, Scope, TokenStore
from rag.cli import app


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["tokens", *args])
    return result.exit_code, result.stdout, result.stderr


def test_add_prints_the_token_alone_on_the_last_line(tmp_path: Path) -> None:
    code, out, err = run("add", "alice", "--scope", "write", "--tenant", "team-a", "--data-dir", str(tmp_path))
    assert code == 0, err
    token = out.splitlines()[-1]
    assert token.startswith("rag_") and " " not in token and out == token + "\n"
    assert "shown this once" in err
    assert TokenStore(tmp_path).verify(token) == Principal("alice", Scope.WRITE, "team-a")
    assert token.split("_", 2)[2] not in (tmp_path / "tokens.json").read_text()


def test_list_shows_everything_but_the_secret_and_revoke_removes(tmp_path: Path) -> None:
    _, alice, _ = run("add", "alice", "--scope", "read", "--data-dir", str(tmp_path))
    run("add", "bob", "--scope", "admin", "--data-dir", str(tmp_path))
    code, out, _ = run("list", "--json", "--data-dir", str(tmp_path))
    listed = json.loads(out)
    assert code == 0 and [(t["name"], t["scope"], t["tenant"]) for t in listed] == [
        ("alice", "read", None),
        ("bob", "admin", None),
    ]
    assert alice.strip() not in out and "hash" not in out
    code, table, _ = run("list", "--data-dir", str(tmp_path))
    assert code == 0 and "alice" in table and "(all)" in table and alice.strip() not in table
    assert run("revoke", "alice", "--data-dir", str(tmp_path))[0] == 0
    assert TokenStore(tmp_path).verify(alice.strip()) is None
    assert [t["name"] for t in json.loads(run("list", "--json", "--data-dir", str(tmp_path))[1])] == ["bob"]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["name"], a["token"]) for a in audit] == [
        ("token_add", "alice", None),
        ("token_add", "bob", None),
        ("token_revoke", "alice", None),
    ]


def test_bad_input_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    folder = str(tmp_path)
    code, _, err = run("add", "eve", "--scope", "read", "--tenant", "a' or tenant != 'b", "--data-dir", folder)
    assert code == 2 and "is not a valid name" in err
    code, _, err = run("add", "eve", "--scope", "root", "--data-dir", folder)
    assert code == 2 and "root" in err
    code, _, err = run("revoke", "nobody", "--data-dir", folder)
    assert code == 2 and "no token named 'nobody'" in err
    assert not (tmp_path / "tokens.json").exists() and not (tmp_path / "audit.jsonl").exists()
    assert run("list", "--data-dir", folder)[0] == 0
