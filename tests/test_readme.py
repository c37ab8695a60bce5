"""The README: its Python snippets run as written (with the test weights in place of the hub's, tests/fixtures/parity),
its configuration table is the settings', and it stays a user's README."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import settings_table
from rag.cli import commands
from rag.settings import Settings
from tests.helpers.models import process_env, use_tiny_model
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


#: Runs each snippet (a JSON list on stdin) in a namespace of its own, in the order given, in one interpreter, and
#: prints, last, a JSON list with each one's traceback or null: one start of Python, torch and the model, not five.
RUNNER = """
import json, sys, traceback
outcomes = []
for number, code in enumerate(json.load(sys.stdin), start=1):
    try:
        exec(compile(code, f"<README snippet {number}>", "exec"), {"__name__": "__main__"})
        outcomes.append(None)
    except BaseException:
        outcomes.append(traceback.format_exc())
print(json.dumps(outcomes))
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> list[str | None]:
    """Each snippet's traceback or ``None``, run as written by a user of the test weights (a variant's name loads
    RAG_WEIGHTS when the hub cannot be reached) over the sample corpus ingested with them."""
    data = tmp_path_factory.mktemp("readme")
    reranker = str(build_reranker(data / "reranker"))
    settings = dict(RAG_DEVICE="cpu", RAG_MILVUS_URI=str(data / "milvus.db"), RAG_DATA_DIR=str(data))
    monkeypatch_module.chdir(ROOT)
    use_tiny_model(monkeypatch_module, **settings)
    assert commands.run(["ingest", "examples/corpus"]) == 0
    codes = [snippet.replace(f'"{RERANKER}"', repr(reranker)) for snippet in SNIPPETS]
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(codes),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=process_env(PYTHONPATH=str(ROOT), **settings),
        timeout=600,
    )
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_readme_has_its_python_snippets() -> None:
    assert len(SNIPPETS) >= 2 and any("from_pretrained" in s for s in SNIPPETS)


@pytest.mark.parametrize(
    "number", range(1, len(SNIPPETS) + 1), ids=[f"snippet-{n}" for n in range(1, len(SNIPPETS) + 1)]
)
@pytest.mark.slow
def test_each_python_snippet_runs(number: int, outcomes: list[str | None]) -> None:
    assert outcomes[number - 1] is None, f"{outcomes[number - 1]}\n--- snippet:\n{SNIPPETS[number - 1]}"


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
