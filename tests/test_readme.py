"""The README: its Python snippets run as written (with the test weights in place of the hub's, tests/fixtures/parity),
its configuration table is the settings', and it stays a user's README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag import settings_table
from rag.settings import Settings
from tests.helpers.models import process_env
from tests.retrieval.tiny_reranker import build_reranker

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
RERANKER = "BAAI/bge-reranker-base"
#: The README's sections, in the order a user reads them; other sections may be added, these stay.
SECTIONS = (
    "Install",
    "Quick start",
    "Concepts",
    "CLI",
    "HTTP API",
    "Python",
    "LlamaIndex",
    "Scaling out",
    "Configuration",
    "Performance",
    "Troubleshooting",
)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The RAG_* settings of a user of the test weights, over the sample corpus ingested with them."""
    data = tmp_path_factory.mktemp("readme")
    env = process_env(
        PYTHONPATH=str(ROOT),
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
@pytest.mark.slow
def test_each_python_snippet_runs(snippet: str, env: dict[str, str]) -> None:
    code = snippet  # as written: a variant's name loads RAG_WEIGHTS when the hub cannot be reached
    code = code.replace(f'"{RERANKER}"', repr(env["TINY_RERANKER"]))
    result = run([sys.executable, "-c", code], env)
    assert result.returncode == 0, f"{result.stderr}\n--- snippet:\n{code}"


def test_the_configuration_table_is_the_settings() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings_table.table_in(text) == settings_table.render(), "README drifted: run python -m rag.settings_table"
    for name, field in Settings.model_fields.items():
        assert f"`RAG_{name.upper()}`" in settings_table.render()
        assert (field.description or "").split()[0] in settings_table.render()


def test_the_table_renders_defaults_as_a_user_sets_them() -> None:
    rows = {line.split(" | ")[0].strip("| `"): line for line in settings_table.render().splitlines()[2:]}
    assert "| `auto` |" in rows["RAG_DEVICE"]
    assert "| unset |" in rows["RAG_WEIGHTS"]  # None
    assert "| unset |" in rows["RAG_SERVER_ALLOWED_ORIGINS"]  # an empty list
    assert "| `false` |" in rows["RAG_ALLOW_URLS"]
    assert "| `./rag_data/milvus.db` |" in rows["RAG_MILVUS_URI"]


def test_the_table_is_rewritten_between_its_markers_only() -> None:
    readme = f"# Title\n\nbefore\n{settings_table.BEGIN}\nold table\n{settings_table.END}\nafter\n"
    rewritten = settings_table.replace_table(readme, "| new |")
    assert rewritten == f"# Title\n\nbefore\n{settings_table.BEGIN}\n| new |\n{settings_table.END}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        settings_table.replace_table("# no markers\n", "| new |")


def test_the_readme_is_for_users_and_its_measurements_are_beside_it() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 700
    assert (
        text.startswith("# mmrag") and "make demo" in text.split("\n## ")[0] and "make test" in text.split("\n## ")[0]
    )
    headings = re.findall(r"^## (.+)$", text, re.M)
    for section in SECTIONS:
        assert section in headings, f"the README lost its section {section!r}"
    assert "(benchmarks/RESULTS.md)" in text and (ROOT / "benchmarks" / "RESULTS.md").is_file()
