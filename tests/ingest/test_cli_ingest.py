"""`rag ingest` and `rag stats` from the command line (CliRunner, in process) with the tiny encoder."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.cli import app
from tests.helpers.models import tiny_model_env

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"


def run(tmp_path: Path, *args: str):
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("RAG_")}
    env.update(
        **tiny_model_env(),
        RAG_MILVUS_URI=str(tmp_path / "db" / "milvus.db"),
        RAG_DATA_DIR=str(tmp_path / "data"),
        COLUMNS="300",  # long temporary paths stay on one line
    )
    return CliRunner().invoke(app, list(args), env=env)


def created(tmp_path: Path) -> list[str]:
    """What a run left under ``tmp_path`` besides the corpus: the database and data folders, if any."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name in ("db", "data"))


def test_ingest_reports_problems_exits_1_and_reruns_idempotently(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")

    first = run(tmp_path, "ingest", str(corpus), "-c", "kb", "--json")
    assert first.exit_code == 1, first.output  # something was skipped
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["added"], summary["skipped"]) == (7, 1)
    problems = [
        p for p in map(json.loads, Path(summary["report"]).read_text().splitlines()) if "kind" in p
    ]  # problems, not runs
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


def test_search_and_ask_name_items_as_ingested_and_show_each_path_once(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus / "photos")
    assert run(tmp_path, "ingest", str(corpus), "-c", "kb").exit_code == 0

    table = run(tmp_path, "search", "-c", "kb", "-t", "a white carriage", "-k", "7").stdout
    rows = [line for line in table.splitlines() if "photos/" in line]
    assert len(rows) == 7 and str(corpus) not in table  # one column of names relative to the ingested folder
    assert all(line.count("photos/") == 1 for line in rows)
    found = json.loads(run(tmp_path, "search", "-c", "kb", "-t", "a white carriage", "--json").stdout)["results"]
    assert {Path(r["source"]).parent for r in found} == {corpus / "photos"}  # JSON keeps the full paths
    assert {r["name"] for r in found} == {f"photos/{p.name}" for p in CORPUS.glob("*.[jp][pn]g")}
    assert {r["metadata"]["name"] for r in found} == {r["name"] for r in found}

    answer = run(tmp_path, "ask", "Which carriage?", "-c", "kb", "-k", "2").stdout
    evidence = [line for line in answer.splitlines() if line.startswith("[")]
    assert len(evidence) == 2 and all(line.split(":")[0].split()[1].startswith("photos/") for line in evidence)
    assert str(corpus) not in "\n".join(evidence)


def test_stats_of_a_missing_collection_says_so(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus, ignore=shutil.ignore_patterns("shapes-*", "mid-*", "carriage-night.*"))
    assert run(tmp_path, "ingest", str(corpus), "-c", "kb").exit_code == 0
    result = run(tmp_path, "stats", "-c", "nothing_here")
    assert result.exit_code == 2
    assert "no collection 'nothing_here'" in result.output and "existing: kb" in result.output


def test_the_progress_line_and_the_summary_agree_and_brackets_survive(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "scan[draft].jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    shutil.copy(CORPUS / "shapes-red-square.png", corpus / "copy[1].png")  # kept, with a warning: no caption

    result = run(tmp_path, "ingest", str(corpus), "-c", "kb")
    assert result.exit_code == 1
    progress = re.search(r"(\d+)/(\d+) [\d.]+ items/s +(\d+) skipped +(\d+) warnings", result.output)
    assert progress is not None, result.output
    done, total, skipped, warnings = map(int, progress.groups())
    summary = dict(re.findall(r"│ (\w+) +│ (\S+) +│", result.output))
    assert (done, total) == (9, 9) and (skipped, warnings) == (1, 1)
    assert (summary["added"], summary["skipped"], summary["warnings"]) == ("8", "1", "1")
    assert f"error {corpus / 'scan[draft].jpg'}: " in result.output
    assert f"warning {corpus / 'copy[1].png'}: no copy[1].txt or copy[1].json beside it" in result.output


def test_a_missing_source_is_refused_before_anything_is_created(tmp_path):
    result = run(tmp_path, "ingest", str(CORPUS), str(tmp_path / "no" / "such"), "-c", "kb")
    assert result.exit_code == 2 and f"no such file or folder: {tmp_path / 'no' / 'such'}" in result.output
    assert created(tmp_path) == []


@pytest.mark.parametrize("as_json", [False, True])
def test_sources_without_items_say_so_and_create_nothing(tmp_path, as_json):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"")
    result = run(tmp_path, "ingest", str(empty), str(broken), "-c", "kb", *(["--json"] if as_json else []))
    assert result.exit_code == 3
    assert "no items found" in result.output and "'kb' was neither created nor changed" in result.output
    if as_json:
        summary = json.loads(result.stdout)
        assert (summary["added"], summary["skipped"], summary["report"]) == (0, 1, None)
    else:
        assert f"error {broken / 'a.png'}: empty file" in result.output
    assert created(tmp_path) == []


def screen(stream: str) -> list[str]:
    """The lines a terminal shows after ``stream``: carriage returns, newlines, erase-line and cursor-up applied,
    other escape sequences dropped."""
    lines, row = [""], 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", stream):
        if token == "\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        elif token == "\r" or token == "\x1b[2K":
            lines[row] = "" if token == "\x1b[2K" else lines[row]
        elif re.fullmatch(r"\x1b\[(\d*)A", token):
            row = max(row - int(token[2:-1] or 1), 0)
        elif not token.startswith("\x1b"):
            lines[row] += token
    return [line for line in lines if line.strip()]


def test_an_error_leaves_no_progress_bar_under_its_message(tmp_path, monkeypatch):
    from io import StringIO

    from rich.console import Console

    import rag.cli.common
    import rag.cli.ingest

    terminal = Console(file=StringIO(), force_terminal=True, width=200)
    monkeypatch.setattr(rag.cli.common, "console", terminal)
    monkeypatch.setattr(rag.cli.ingest, "console", terminal)
    result = run(tmp_path, "ingest", str(CORPUS), "-c", "kb", "--weights", str(tmp_path / "missing.pth"))
    assert result.exit_code == 2
    shown = screen(terminal.file.getvalue())
    assert shown[0].startswith("error:") and "missing.pth" in shown[0], shown
    assert not any("loading the encoder" in line for line in shown), shown
