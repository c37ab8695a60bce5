"""`rag ingest` and `rag stats` from the command line (CliRunner, in process) with the tiny encoder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from typer.testing import CliRunner

from rag.cli import app
from tests.conftest import parity_dir

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"


def run(tmp_path: Path, *args: str):
    tiny = parity_dir("base")
    env = {name: None for name in os.environ if name.startswith("RAG_")}
    env.update(
        RAG_WEIGHTS=str(tiny / "weights.pth"),
        RAG_TEXT_MODEL=str(tiny / "text_model"),
        RAG_VISION_CONFIG=str(tiny / "vision_config.json"),
        RAG_MILVUS_URI=str(tmp_path / "db" / "milvus.db"),
        RAG_DATA_DIR=str(tmp_path / "data"),
    )
    return CliRunner().invoke(app, list(args), env=env)


def test_ingest_reports_problems_exits_1_and_reruns_idempotently(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")

    first = run(tmp_path, "ingest", str(corpus), "-c", "kb", "--json")
    assert first.exit_code == 1, first.output  # something was skipped
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["added"], summary["skipped"]) == (7, 1)
    problems = [json.loads(line) for line in Path(summary["report"]).read_text().splitlines()]
    assert [Path(p["source"]).name for p in problems] == ["broken.png"]

    (corpus / "broken.png").unlink()
    second = run(tmp_path, "ingest", str(corpus), "-c", "kb", "--json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout.strip().splitlines()[-1])["unchanged"] == 7

    stats = run(tmp_path, "stats", "-c", "kb", "--json")
    data = json.loads(stats.stdout)
    assert (data["count"], data["dim"], data["backend"]) == (7, 64, "lite")
    assert data["encoder"]["fingerprint"].startswith("visualized-bge:custom:64:")
    assert data["ingest_runtime"]["device"] == "cpu" and data["ingest_runtime"]["reason"].startswith("auto:")
    table = run(tmp_path, "stats", "-c", "kb")
    assert "ingested on" in table.output and "because" in table.output


def test_stats_of_a_missing_collection_says_so(tmp_path):
    result = run(tmp_path, "stats", "-c", "nothing-here")
    assert result.exit_code == 2
    assert "nothing-here" in result.output
