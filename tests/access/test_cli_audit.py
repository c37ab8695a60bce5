"""`rag ingest`, `rag delete` and `rag drop` write the audit log too: no token, the system user, what and how many."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ingest.test_cli_ingest import CORPUS, run


@pytest.mark.slow  # an ingest, a delete and a drop through the CLI
def test_local_changes_are_written_to_the_audit_log(tmp_path: Path) -> None:
    assert run(tmp_path, "ingest", str(CORPUS), "-c", "kb").exit_code == 0
    assert run(tmp_path, "delete", "-c", "kb", "-f", "source=carriage-day.jpg", "--yes").exit_code == 0
    assert run(tmp_path, "drop", "-c", "kb", "--yes").exit_code == 0
    lines = [json.loads(line) for line in (tmp_path / "data" / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["token"], a["tenant"], a["collection"]) for a in lines] == [
        ("ingest", None, None, "kb"),
        ("delete", None, None, "kb"),
        ("drop", None, None, "kb"),
    ]
    ingested, deleted, dropped = lines
    assert ingested["files"] == [str(CORPUS)] and ingested["added"] > 1 and "user" in ingested
    assert (deleted["filter"], deleted["deleted"]) == ("source=carriage-day.jpg", 1)
    assert dropped["deleted"] == ingested["added"] - 1
