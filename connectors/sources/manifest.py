"""JSONL and CSV manifests: one item per row, with an image column, a text column and metadata columns.

The image cell is a path relative to the manifest, an absolute path, or an http(s) URL (fetched
only when ``allow_urls`` is on). The first present column of ``options.image_columns`` and of
``options.text_columns`` is used; ``options.tags_column`` holds tags; every other non-empty cell
goes to metadata, with the manifest path and line number. A row may be text-only. Bad rows are
reported as ``path:line`` and the rest of the manifest is still read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rag.items import SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, SourceResult, make_item, missing_caption, parse_tags
from .compressed import cut_off, open_binary, real_suffix
from .options import SourceOptions
from .refs import load_image_ref

JSONL_SUFFIXES = (".jsonl", ".ndjson")

_Row = dict[str, Any] | BadInput


def iter_manifest(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield the items of a ``.jsonl``/``.ndjson`` manifest, or of a CSV manifest (any other suffix)."""
    options = options or SourceOptions()
    manifest = Path(path).resolve()
    jsonl = real_suffix(manifest) in JSONL_SUFFIXES
    rows = _jsonl_rows(manifest, options) if jsonl else _csv_rows(manifest, options)
    while True:
        try:
            line, row = next(rows)
        except StopIteration:
            return
        except FileNotFoundError:
            yield SourceError(source=str(manifest), reason="file not found", kind=Kind.NOT_FOUND)
            return
        except OSError as e:
            reason = f"cannot read: {e.strerror or e}"
            yield SourceError(source=str(manifest), reason=reason, kind=Kind.UNREADABLE)
            return
        except BadInput as e:  # a corrupt .gz: the rows before it are kept
            yield e.report(str(manifest))
            return
        where = f"{manifest}:{line}"
        if isinstance(row, BadInput):
            yield row.report(where)
        else:
            yield from _row_items(row, manifest, line, where, options)


def manifest_columns(path: Path, options: SourceOptions) -> list[str]:
    """The manifest columns (image or text, as ``options`` names them) the file's header or first JSON object
    has: empty for a CSV or JSONL file that is not a manifest. Reads one line; unreadable files have none."""
    wanted = set(options.image_columns) | set(options.text_columns)
    try:
        with open_binary(path, options) as f:
            first = next((line for line in f if line.strip()), b"")
    except (OSError, BadInput):
        return []
    if real_suffix(path) in JSONL_SUFFIXES:
        try:
            row = json.loads(first)
        except ValueError:
            return []
        keys = list(row) if isinstance(row, dict) else []
    else:
        keys = next(csv.reader([first.decode("utf-8-sig", errors="replace")]), [])
    return [k.strip() for k in keys if isinstance(k, str) and k.strip() in wanted]


def _jsonl_rows(path: Path, options: SourceOptions) -> Iterator[tuple[int, _Row]]:
    with open_binary(path, options) as f:
        line = 0
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as e:
                yield line, BadInput(Kind.BAD_ROW, f"invalid JSON: {e}")
                continue
            yield line, row if isinstance(row, dict) else BadInput(Kind.BAD_ROW, "not a JSON object")
        problem = cut_off(f, options)
        if problem:
            yield line + 1, problem


def _csv_rows(path: Path, options: SourceOptions) -> Iterator[tuple[int, _Row]]:
    bad_lines: set[int] = set()
    with open_binary(path, options) as f:
        reader = csv.reader(_decoded_lines(f, bad_lines), strict=True)
        header = [h.strip() for h in next(reader, [])]
        if not any(header):
            yield 1, BadInput(Kind.BAD_ROW, "no header row")
            return
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                problem = cut_off(f, options)
                if problem:
                    yield line, problem
                return
            except csv.Error as e:
                yield line, BadInput(Kind.BAD_ROW, f"malformed CSV: {e}")
                continue
            if bad_lines.intersection(range(line, reader.line_num + 1)):
                yield line, BadInput(Kind.BAD_ROW, "not valid UTF-8")
            elif not any(c.strip() for c in cells):
                continue
            elif len(cells) != len(header):
                yield line, BadInput(Kind.BAD_ROW, f"{len(cells)} fields, the header has {len(header)}")
            else:
                yield line, dict(zip(header, cells))


def _decoded_lines(f: BinaryIO, bad_lines: set[int]) -> Iterator[str]:
    """Decode line by line, so one bad line is reported on its own and the rest is still read."""
    for number, raw in enumerate(f, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            bad_lines.add(number)
            yield raw.decode("utf-8", errors="replace")


def _row_items(
    row: dict[str, Any], manifest: Path, line: int, where: str, options: SourceOptions
) -> Iterator[SourceResult]:
    image_col = next((c for c in options.image_columns if row.get(c) not in (None, "")), None)
    text_col = next((c for c in options.text_columns if row.get(c) not in (None, "")), None)
    ref = row[image_col] if image_col else None
    text = row[text_col] if text_col else ""
    try:
        if ref is not None and not isinstance(ref, str):
            raise BadInput(Kind.BAD_ROW, f"{image_col!r} must be a string")
        if not isinstance(text, str):
            raise BadInput(Kind.BAD_ROW, f"{text_col!r} must be a string")
        if ref is None and not text.strip():
            raise BadInput(
                Kind.BAD_ROW,
                f"no image (columns {', '.join(options.image_columns)}) and no text "
                f"(columns {', '.join(options.text_columns)})",
            )
        try:
            tags = parse_tags(row.get(options.tags_column))
        except ValueError as e:
            raise BadInput(Kind.BAD_ROW, str(e)) from None
        image = load_image_ref(ref, manifest.parent, options, url_encoded=False) if ref is not None else None
    except BadInput as e:
        yield e.report(where)
        return
    used = {image_col, text_col, options.tags_column}
    metadata = {k: v for k, v in row.items() if k not in used and v not in (None, "")}
    metadata.update(manifest=str(manifest), line=line)
    text = text.strip()
    yield from make_item(
        source=str(manifest),
        where=where,
        options=options,
        text=text,
        image=image,
        metadata=metadata,
        tags=tags,
        anchor=f"line={line}",
        anchor_in_id=False,  # a row is its content: reordering a manifest embeds nothing again
        # a row's document is the manifest, the file this source reads: re-ingesting it replaces its own rows and
        # never the items a folder (or another manifest) made of the same pictures
        ref_doc_id=str(manifest),
        content_hash=hashlib.sha256(image.data).hexdigest() if image is not None else "",
    )
    if image is not None and not text:
        yield missing_caption(where)
