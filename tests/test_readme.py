"""The README's Python snippets run as written, with the test weights in place of the hub's (tests/fixtures/parity)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import parity_dir
from tests.retrieval.tiny_reranker import build_reranker

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
HUB_NAMES = ("bge-visualized-base-en-v1.5", "bge-visualized-m3")
RERANKER = "BAAI/bge-reranker-base"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The RAG_* settings of a user of the test weights, over the sample corpus ingested with them."""
    tiny = parity_dir("base")
    data = tmp_path_factory.mktemp("readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        PYTHONPATH=str(ROOT),
        RAG_WEIGHTS=str(tiny / "weights.pth"),
        RAG_TEXT_MODEL=str(tiny / "text_model"),
        RAG_VISION_CONFIG=str(tiny / "vision_config.json"),
        RAG_DEVICE="cpu",
        RAG_MILVUS_URI=str(data / "milvus.db"),
        RAG_DATA_DIR=str(data),
        TINY_RERANKER=str(build_reranker(data / "reranker")),
    )
    ingested = run([sys.executable, "-m", "rag.cli", "ingest", "examples/corpus"], env)
    assert ingested.returncode == 0, ingested.stderr
    return env


def test_the_readme_has_its_python_snippets() -> None:
    assert len(SNIPPETS) >= 2 and any("from_pretrained" in s for s in SNIPPETS)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet-{n}" for n in range(1, len(SNIPPETS) + 1)])
def test_each_python_snippet_runs(snippet: str, env: dict[str, str]) -> None:
    code = snippet
    for name in HUB_NAMES:
        code = code.replace(f'"{name}"', repr(env["RAG_WEIGHTS"]))
    code = code.replace(f'"{RERANKER}"', repr(env["TINY_RERANKER"]))
    result = run([sys.executable, "-c", code], env)
    assert result.returncode == 0, f"{result.stderr}\n--- snippet:\n{code}"
