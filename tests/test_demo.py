"""`make demo`: stops at once with directions when the weights are missing; runs end to end when present."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import parity_dir

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
    d = parity_dir("base")
    result = run_demo(
        tmp_path,
        RAG_WEIGHTS=str(d / "weights.pth"),
        RAG_TEXT_MODEL=str(d / "text_model"),
        RAG_VISION_CONFIG=str(d / "vision_config.json"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = dict(re.findall(r"│ (\w+) +│ (\S+) +│", result.stdout))  # the ingest table, as `rag ingest` prints it
    assert (summary["collection"], summary["added"], summary["skipped"]) == ("demo", "7", "0"), result.stdout
    for title in ("text → image+text", "image → image", "composed image+text → image"):
        assert title in result.stdout
    captions = re.findall(r"│ [\d.]+ +│ \S+ +│ (.+?) +│", result.stdout)
    assert len(captions) == 9 and all(len(c) <= 70 for c in captions), captions
    assert any(c.endswith("…") for c in captions), captions  # a long caption is cut with an ellipsis
    assert (tmp_path / "rag_data" / "milvus.db").exists()
