"""How results read in a terminal: texts cut with an ellipsis, long names shortened, the ingest summary.

Shared by the ``rag`` command and the demo. Rich reads ``[word]`` in a string as markup, so every
string that comes from data or from the user reaches Rich as :class:`~rich.text.Text` or escaped.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rag.items import Severity, SourceError

#: The rows of the ingest summary, in order (``warmup_seconds`` only when the engine warmed up within the run);
#: the progress bar counts skipped inputs and warnings the same way.
SUMMARY_ROWS = (
    "collection", "added", "unchanged", "replaced", "skipped", "warnings", "warmup_seconds", "items_per_second", "report"
)


def snippet(text: str, limit: int = 100, empty: str = "") -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis; ``empty`` when there is none."""
    text = " ".join(text.split()) or empty
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_name(name: str, width: int = 48) -> str:
    """``name`` in at most ``width`` characters, keeping its end (the file name): ``…/photos/2024/bridge.jpg``."""
    if len(name) <= width:
        return name
    tail = name[len(name) - width + 1 :]
    cut = tail.find("/")
    return "…" + (tail[cut:] if 0 <= cut < len(tail) - 1 else tail)


def problem_line(problem: SourceError) -> str:
    """One problem as Rich markup: its severity in colour, then where and why (escaped)."""
    colour = "red" if problem.severity is Severity.ERROR else "yellow"
    return f"[{colour}]{problem.severity.value}[/] {escape(problem.source)}: {escape(problem.reason)}"


def ingest_summary(summary: Mapping[str, Any], problems: Sequence[SourceError], limit: int = 20) -> list[Any]:
    """Renderables for an ingest: the summary table (keys of ``SUMMARY_ROWS``), then the first problems."""
    table = Table(title="ingest", show_header=False)
    for key in SUMMARY_ROWS:
        value = summary.get(key)
        if key != "warmup_seconds" or value:  # the Ray engine's actors start and load the model within the run
            table.add_row(key, Text("-" if value is None else str(value)))
    lines: list[Any] = [table, *(problem_line(problem) for problem in problems[:limit])]
    if len(problems) > limit:
        where = f" in {summary['report']}" if summary.get("report") else ""
        lines.append(Text(f"… and {len(problems) - limit} more{where}"))
    return lines
