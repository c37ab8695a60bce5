"""How many items the sources will yield, where that is cheap to know: for progress bars and their ETA.

Folders of images count their image files and manifests their rows, without decoding or hashing anything;
documents (PDF, Markdown, HTML, text, DOCX, PPTX) are not counted (their chunks and figures are only found by
reading them), nor are folders holding any.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ._common import IMAGE_SUFFIXES
from .manifest import JSONL_SUFFIXES
from .options import SourceOptions

_DOCUMENT_SUFFIXES = frozenset({".pdf", ".md", ".markdown", ".html", ".htm", ".docx", ".pptx", ".csv", *JSONL_SUFFIXES})


def count_items(paths: Sequence[str | os.PathLike[str]], options: SourceOptions | None = None) -> int | None:
    """The number of items the sources will yield (bad ones included), or None when some source cannot tell."""
    options = options or SourceOptions()
    total = 0
    for path in paths:
        count = _count(os.fspath(path), options)
        if count is None:
            return None
        total += count
    return total


def _count(text: str, options: SourceOptions) -> int | None:
    if urlsplit(text).scheme.lower() in ("http", "https"):
        return 1
    path = Path(text)
    if path.is_dir():
        return _count_folder(path, options.cache_dir.resolve())
    if not path.is_file():
        return 0
    suffix = path.suffix.lower()
    try:
        if suffix in JSONL_SUFFIXES:
            with path.open("rb") as f:
                return sum(1 for line in f if line.strip())
        if suffix == ".csv":
            with path.open(encoding="utf-8", errors="replace", newline="") as f:
                return max(0, sum(1 for row in csv.reader(f) if row) - 1)
    except (OSError, csv.Error):
        return None
    if suffix in IMAGE_SUFFIXES:
        return 1
    return None


def _count_folder(root: Path, cache_dir: Path) -> int | None:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root.resolve()):
        current = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and (current / d).resolve() != cache_dir]
        suffixes = [Path(n).suffix.lower() for n in filenames if not n.startswith(".")]
        stems = {Path(n).stem for n in filenames if Path(n).suffix.lower() in IMAGE_SUFFIXES}
        if any(s in _DOCUMENT_SUFFIXES for s in suffixes) or any(
            Path(n).suffix.lower() == ".txt" and Path(n).stem not in stems for n in filenames if not n.startswith(".")
        ):
            return None
        count += sum(1 for s in suffixes if s in IMAGE_SUFFIXES)
    return count
