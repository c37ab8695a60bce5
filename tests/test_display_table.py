"""The `rag search` table reads at 60, 80 and 160 columns: full names wrapped, never cut; --wide every column."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from rag.display import item_link, results_table
from rag.retrieval import Evidence

LONG = "handbooks/operations/depot-maintenance/installation-guide.md#configuring-the-signal-interlocking&chunk=2"


def rows() -> list[Evidence]:
    return [
        Evidence(
            rank=1, id="a", score=0.9123, source="/srv/docs/" + LONG.split("#")[0], name=LONG,
            text="Interlocking " * 40, metadata={"modality": "text"},
        ),
        Evidence(
            rank=2, id="b", score=0.5, source="/srv/docs/photos/bridge.jpg", name="photos/bridge.jpg", text="",
            image="/srv/docs/photos/bridge.jpg", metadata={"modality": "image"},
        ),
    ]  # fmt: skip


def render(width: int, wide: bool = False) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    table = results_table(rows(), title=Text("text-to-text in kb"), caption="scores: cosine", width=width, wide=wide)
    console.print(table)
    return console.export_text().splitlines()


def cells(lines: list[str], column: int) -> str:
    """The text of one column, its wrapped lines joined."""
    parts = [line.split("│")[column].strip() for line in lines if line.count("│") > column]
    return "".join(parts)


@pytest.mark.parametrize("width", [60, 80])
def test_a_narrow_terminal_shows_rank_score_and_the_whole_name_then_a_snippet(width: int) -> None:
    lines = render(width)
    assert all(len(line) <= width for line in lines)
    header = next(line for line in lines if "score" in line)
    assert "kind" not in header and "text" not in header.replace("text-to-text", "")
    item = cells(lines, 3)
    assert LONG in item and "photos/bridge.jpg" in item  # wrapped, every character kept
    assert "0.9123" in cells(lines, 2) and "Interlocking Interlocking" in item and "(picture)" in item
    assert item.count("Interlocking") < 20  # a snippet, not the text


def test_a_wide_terminal_and_wide_show_every_column() -> None:
    for lines in (render(160), render(80, wide=True)):
        header = next(line for line in lines if "score" in line)
        assert "kind" in header and "text" in header
        assert LONG in cells(lines, 3)


def test_names_link_to_their_file_at_the_anchor_without_the_chunk() -> None:
    link = item_link("/srv/docs/handbooks/guide.md", "handbooks/guide.md#install&chunk=2")
    assert link == Path("/srv/docs/handbooks/guide.md").as_uri() + "#install"
    assert item_link("/srv/notes.txt", "notes.txt#line=4,9&chunk=3").endswith("notes.txt#line=4,9")
    assert item_link("/srv/notes.txt", "notes.txt#chunk=2") == "file:///srv/notes.txt"
    assert item_link("guide.md", "guide.md#install") is None  # a name from a server: no local file


def test_a_question_without_t_is_told_to_add_t() -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    result = CliRunner().invoke(app, ["search", "where is the depot"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert 'give the question with -t: rag search -t "where is the depot"' in result.output
