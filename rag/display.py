"""How results read in a terminal: texts cut with an ellipsis, long names shortened, the ingest summary.

Shared by the ``rag`` command and the demo. Rich reads ``[word]`` in a string as markup, so every
string that comes from data or from the user reaches Rich as :class:`~rich.text.Text` or escaped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from rich.markup import escape
from rich.style import Style
from rich.table import Table
from rich.text import Text

from rag.items import Severity, SourceError, SourceErrorKind, link_fragment

#: What a warning of each kind is about, in the plural: "31 images without a caption".
_WARNING_KINDS = {
    SourceErrorKind.MISSING_CAPTION: "images without a caption",
    SourceErrorKind.TEXT_OVER_WINDOW: "texts longer than the encoder's window (the vector reads their start)",
    SourceErrorKind.TEXT_TOO_LONG: "texts cut to the store's text field",
    SourceErrorKind.BAD_SIDECAR: "caption files not used",
    SourceErrorKind.NOT_TEXT: "files not in UTF-8, read as Latin-1",
    SourceErrorKind.TOO_MANY_CHUNKS: "documents over the chunk cap, the rest left out",
    SourceErrorKind.TOO_MANY_IMAGES: "documents over the image cap, the rest left out",
    SourceErrorKind.SYMLINK_LOOP: "folder links not followed again",
    SourceErrorKind.EMPTY_FILE: "empty files",
    SourceErrorKind.RENAMED: "documents renamed, another having their file name",
    SourceErrorKind.NO_TEXT_LAYER: "PDFs with pages without a text layer, stored as pictures (OCR: mmrag[ocr])",
    SourceErrorKind.OCR_FAILED: "pages or pictures OCR failed on, stored as pictures without their text",
    SourceErrorKind.URL_DISABLED: "remote images not fetched (URL fetching is off), their documents' text kept",
    SourceErrorKind.FETCH_FAILED: "remote images that could not be fetched, their documents' text kept",
    SourceErrorKind.NOT_FOUND: "referenced images missing, their documents' text kept",
    SourceErrorKind.BAD_REFERENCE: "images without a src, their documents' text kept",
}

#: The rows of the ingest summary, in order (``warmup_seconds`` only when the engine warmed up within the run);
#: the progress bar counts skipped inputs and warnings the same way.
SUMMARY_ROWS = (
    "collection",
    "added",
    "unchanged",
    "replaced",
    "removed",
    "skipped",
    "warnings",
    "passed_over",
    "warmup_seconds",
    "items_per_second",
    "report",
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
    """Renderables for an ingest: the summary table (keys of ``SUMMARY_ROWS``), then the errors, each with its
    reason (the first ``limit``), the warnings as one line per kind with a count, the files passed over, and
    the report's path."""
    table = Table(title="ingest", show_header=False)
    for key in SUMMARY_ROWS:
        value = summary.get(key)
        if key != "warmup_seconds" or value:  # the Ray engine's actors start and load the model within the run
            table.add_row(key, Text("-" if value is None else str(value)))
    errors = [p for p in problems if p.severity is Severity.ERROR]
    lines: list[Any] = [table, *(problem_line(problem) for problem in errors[:limit])]
    if len(errors) > limit:
        lines.append(Text(f"… and {len(errors) - limit} more errors"))
    lines.extend(_warning_lines(problems))
    passed = [p for p in problems if p.kind is SourceErrorKind.PASSED_OVER]
    if passed:
        lines.append(Text(passed_over_line(passed)))
    if summary.get("report") and problems:
        lines.append(Text(f"every problem, one per line: {summary['report']}"))
    return lines


def passed_over_line(passed: Sequence[SourceError], examples: int = 3) -> str:
    """The files passed over by type, most first, with counts and a few names of each:
    ``passed over 5 files: 3 .zip files (a.zip, b.zip, c.zip), 2 files without a suffix (blob, core)``."""
    by_type: dict[str, list[str]] = {}
    for problem in passed:
        path = PurePath(problem.source)
        suffix = "".join(path.suffixes[-2:]) if path.suffix.lower() == ".gz" else path.suffix
        by_type.setdefault(suffix.lower(), []).append(path.name)
    parts = []
    for suffix, names in sorted(by_type.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        plural = "s" if len(names) > 1 else ""
        kind = f"{suffix} file{plural}" if suffix else f"file{plural} without a suffix"
        more = ", …" if len(names) > examples else ""
        parts.append(f"{len(names)} {kind} ({', '.join(names[:examples])}{more})")
    return f"passed over {len(passed)} file{'s' if len(passed) > 1 else ''}: {', '.join(parts)}"


def _warning_lines(problems: Sequence[SourceError]) -> list[str]:
    """One line per kind of warning: how many, what about, and the first one as an example."""
    warnings = [p for p in problems if p.severity is Severity.WARNING and p.kind is not SourceErrorKind.PASSED_OVER]
    counts = Counter(p.kind for p in warnings)
    lines = []
    for kind, count in counts.items():
        first = next(p for p in warnings if p.kind is kind)
        if count == 1:
            lines.append(problem_line(first))
            continue
        about = _WARNING_KINDS.get(kind, f"warnings ({kind.value.replace('_', ' ')})")
        lines.append(f"[yellow]warning[/] {count} {about}, e.g. {escape(first.source)}: {escape(first.reason)}")
    return lines


#: Below this width ``rag search`` shows the compact table (rank, score, the name wrapped, a snippet under it).
WIDE_COLUMNS = 140


def item_link(source: str, name: str) -> str | None:
    """A ``file://`` URI a terminal opens for an item whose source is a local file: at its anchor, less
    ``&chunk=N`` (``rag.items.link_fragment``); None for a URL or a relative name (from a server)."""
    path = PurePath(source)
    if not path.is_absolute():
        return None
    fragment = link_fragment(name.partition("#")[2])
    return Path(path).as_uri() + (f"#{fragment}" if fragment else "")


def results_table(rows: Sequence[Any], *, title: Text, caption: str, width: int, wide: bool) -> Table:
    """Search results as a table that reads at ``width`` columns. Compact (under ``WIDE_COLUMNS``, unless
    ``wide``): rank, score and the full name, wrapped and never cut, with a short snippet under it. Wide: rank,
    score, rerank score, name, kind and text. Names link to their file at their anchor where the terminal can."""
    table = Table(title=title, caption=caption)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    reranked = any(r.rerank_score is not None for r in rows)
    wide = wide or width >= WIDE_COLUMNS
    if reranked and wide:
        table.add_column("rerank", justify="right")  # the cross-encoder's score, which orders the rows
    table.add_column("item", overflow="fold", ratio=2 if wide else None)
    if wide:
        table.add_column("kind", no_wrap=True)  # text chunks and pictures share one ranking
        table.add_column("text", overflow="fold", ratio=3)
    for r in rows:
        name = Text(r.name, style=Style(link=item_link(r.source, r.name)))
        score = f"{r.score:.4f}" if r.score is not None else "-"
        if wide:
            rerank = [f"{r.rerank_score:.4f}" if r.rerank_score is not None else "-"] if reranked else []
            kind = str(r.metadata.get("modality", ""))
            table.add_row(str(r.rank), score, *rerank, name, kind, Text(snippet(r.text)))
        else:
            room = max(24, width - 20)  # the snippet: about a line of the item column
            cell = name + Text("\n") + Text(snippet(r.text, room, empty="(picture)"), style="dim")
            table.add_row(str(r.rank), score, cell)
    return table
