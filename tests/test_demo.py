"""`make demo`: stops at once with directions when the weights are missing; runs end to end when present."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.models import tiny_model_env

pytestmark = pytest.mark.slow  # the demo ingests and queries in a subprocess

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def run_demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    environment.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", COLUMNS="160", **env)
    return subprocess.run(
        [sys.executable, str(DEMO)], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )


def test_demo_without_weights_says_how_to_get_them(tmp_path):
    result = run_demo(tmp_path)
    assert result.returncode == 2
    assert "Visualized_base_en_v1.5.pth" in result.stdout and "RAG_WEIGHTS" in result.stdout
    assert not (tmp_path / "rag_data").exists()  # stopped before touching the store


def test_demo_with_local_weights_ingests_and_queries(tmp_path):
    result = run_demo(tmp_path, **tiny_model_env())
    assert result.returncode == 0, result.stdout + result.stderr
    summary = dict(re.findall(r"│ (\w+) +│ (\S+) +│", result.stdout))  # the ingest table, as `rag ingest` prints it
    assert (summary["collection"], summary["skipped"]) == ("demo", "0"), result.stdout
    assert int(summary["added"]) > 7  # the pictures and the documents' chunks, pages and figures
    for question in ("What is a fishplate?", "a green triangle"):  # text queries over everything, in one ranking
        assert f"text → everything (text-to-any): '{question}'" in result.stdout
    assert len(re.findall(r"^answered by (a text chunk|a picture): \S+", result.stdout, re.MULTILINE)) == 2
    for title in ("image → image", "composed image+text → image"):
        assert title in result.stdout
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines()]
    texts = [row[-1] for row in rows if len(row) in (3, 4) and re.fullmatch(r"[\d.]+", row[0])]
    assert len(texts) == 12 and all(len(text) <= 70 for text in texts), texts
    assert any(text.endswith("…") for text in texts), texts  # a long text is cut with an ellipsis
    kinds = {row[1] for row in rows if len(row) == 4 and re.fullmatch(r"[\d.]+", row[0])}
    assert kinds <= {"text", "image", "image+text"} and kinds, rows
    assert (tmp_path / "rag_data" / "milvus.db").exists()
