"""Spreadsheets and CSV tables: a sheet's rows as text chunks, each starting with the header row.

Rows are written one per line, cells joined by `` | ``, under the sheet's first non-empty row (its header), and as
many rows go in a chunk as fit the encoder's window with the header. A chunk's anchor names its rows as RFC 7111
does for CSV, 1-based with the header as row 1: ``#row=2-41``; a workbook's adds its sheet,
``#sheet=Budget&row=2-41``. Its metadata holds the sheet, the header and the rows.

Workbooks (``.xlsx``, ``.xlsm``, ``.xls``, ``.ods``) are read with python-calamine, after the same zip-bomb check as
DOCX; a CSV file's delimiter is sniffed (``,``, ``;``, tab, ``|``). A CSV with a manifest's columns is a manifest
(``manifest``), not a table. A file the library cannot read is one named error.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, SourceResult, make_item
from .compressed import read_bytes, real_suffix
from .documents import read_text
from .options import SourceOptions

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
_ZIPPED = (".xlsx", ".xlsm", ".ods")
_SEPARATOR = " | "


def iter_table(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield a CSV file's or a workbook's rows as text chunks, sheet by sheet, each with the header row."""
    options = options or SourceOptions()
    doc = Path(path).resolve()
    where = str(doc)
    try:
        if real_suffix(doc) in WORKBOOK_SUFFIXES:
            sheets = _workbook_sheets(doc, options)
        else:
            text = yield from read_text(doc, options)
            sheets = [("", _csv_rows(text))]
    except BadInput as e:
        yield e.report(where)
        return
    room = options.max_chunks_per_document
    left_out = 0
    for sheet, rows in sheets:
        for chunk in _chunks(rows, options):
            if room <= 0:
                left_out += chunk.rows[1] - chunk.rows[0] + 1
                continue
            room -= 1
            yield from _item(doc, sheet, chunk, options)
    if left_out:
        reason = f"over the {options.max_chunks_per_document}-chunk cap per document: {left_out:,} rows left out"
        yield SourceError(source=where, reason=reason, kind=Kind.TOO_MANY_CHUNKS, severity=Severity.WARNING)


class _Chunk:
    def __init__(self, header: list[str], lines: list[str], rows: tuple[int, int]) -> None:
        self.header, self.lines, self.rows = header, lines, rows


def _chunks(rows: Iterable[tuple[int, list[str]]], options: SourceOptions) -> Iterator[_Chunk]:
    """Rows (numbered as in the file) grouped under the header as the window allows; empty rows are left out."""
    window = options.window
    header: list[str] | None = None
    head_tokens = 0
    lines: list[str] = []
    first = last = 0
    used = 0
    for number, cells in rows:
        if not any(cells):
            continue
        line = _SEPARATOR.join(cells).strip()
        if header is None:
            header, head_tokens = cells, window.count(line)
            continue
        tokens = window.count(line) + 1
        if lines and head_tokens + used + tokens > window.text_tokens:
            yield _Chunk(header, lines, (first, last))
            lines, used = [], 0
        if not lines:
            first = number
        lines.append(line)
        used += tokens
        last = number
    if header is not None and lines:
        yield _Chunk(header, lines, (first, last))
    elif header is not None:
        yield _Chunk(header, [], (1, 1))  # a header and no rows: the header is the table's only text


def _item(doc: Path, sheet: str, chunk: _Chunk, options: SourceOptions) -> Iterator[SourceResult]:
    first, last = chunk.rows
    rows = f"row={first}" if first == last else f"row={first}-{last}"
    anchor = f"sheet={quote(sheet, safe='')}&{rows}" if sheet else rows
    text = "\n".join([_SEPARATOR.join(chunk.header).strip(), *chunk.lines])
    metadata: dict[str, Any] = {"file_path": str(doc), "header": chunk.header, "rows": [first, last]}
    if sheet:
        metadata["sheet"] = sheet
    yield from make_item(
        source=str(doc), where=f"{doc}#{anchor}", options=options, text=text, anchor=anchor, metadata=metadata
    )


def _csv_rows(text: str) -> list[tuple[int, list[str]]]:
    """A CSV text's rows, numbered by record (RFC 7111 counts records, the header as 1), cells stripped."""
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    return [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(io.StringIO(text), dialect), start=1)]


def _workbook_sheets(doc: Path, options: SourceOptions) -> list[tuple[str, list[tuple[int, list[str]]]]]:
    data = read_bytes(doc, options)
    kind = real_suffix(doc)
    if kind in _ZIPPED:
        _check_zip(data, kind, options.max_document_bytes)
    from python_calamine import CalamineWorkbook

    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
        sheets = []
        for name in book.sheet_names:
            values = book.get_sheet_by_name(name).to_python(skip_empty_area=False)
            sheets.append((name, [(n, [_cell(v) for v in row]) for n, row in enumerate(values, start=1)]))
    except Exception as e:  # calamine raises its own errors, and ValueError/KeyError, on broken files
        raise BadInput(Kind.UNREADABLE_DOCUMENT, f"not a readable {kind} file: {type(e).__name__}: {e}") from None
    return sheets


def _check_zip(data: bytes, kind: str, cap: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as e:
        raise BadInput(Kind.UNREADABLE_DOCUMENT, f"not a readable {kind} file (corrupt zip: {e})") from None
    if unpacked > cap:
        reason = f"unpacks to {unpacked:,} bytes, over the {cap:,}-byte limit (a zip bomb?)"
        raise BadInput(Kind.UNREADABLE_DOCUMENT, reason)


def _cell(value: object) -> str:
    """A cell as the sheet shows it: whole numbers without ``.0``, dates in ISO form, empty cells empty."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return " ".join(str(value).split())
