"""Pick the source for each path: folder, manifest, PDF, Markdown/HTML document, image file or URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

from rag.items import SourceError
from rag.items import SourceErrorKind as Kind

from ._common import IMAGE_SUFFIXES, SourceResult
from .documents import HTML_SUFFIXES, MARKDOWN_SUFFIXES, iter_html, iter_markdown
from .folder import image_with_sidecar, iter_folder
from .manifest import JSONL_SUFFIXES, iter_manifest
from .options import SourceOptions
from .pdf import iter_pdf
from .urls import iter_urls

_SUPPORTED = (
    "a folder, .jsonl/.ndjson/.csv manifests, .pdf, .md/.markdown/.html/.htm documents, "
    f"image files ({'/'.join(sorted(IMAGE_SUFFIXES))}) or http(s) image URLs"
)


def open_sources(paths: Sequence[str | os.PathLike[str]], **options: Any) -> Iterator[SourceResult]:
    """Items and errors from every path in turn, each read by the source its type calls for.

    ``options`` are the fields of :class:`SourceOptions`; an unknown name raises at once.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"open_sources takes a sequence of paths, not one path: use [{os.fspath(paths)!r}]")
    opts = SourceOptions(**options)
    return (result for path in paths for result in open_source(path, opts))


def open_source(path: str | os.PathLike[str], options: SourceOptions) -> Iterator[SourceResult]:
    """Items and errors from one path; a path no source can read yields one ``unsupported`` error."""
    text = os.fspath(path)
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return iter_urls([text], options)
    local = Path(text)
    if local.is_dir():
        return iter_folder(local, options)
    suffix = local.suffix.lower()
    if not local.exists():
        if "://" in text:
            return _fail(text, f"unsupported URL scheme {scheme!r}; only http(s) URLs are fetched", Kind.UNSUPPORTED)
        return _fail(text, "no such file or directory", Kind.NOT_FOUND)
    if suffix in JSONL_SUFFIXES or suffix == ".csv":
        return iter_manifest(local, options)
    if suffix == ".pdf":
        return iter_pdf(local, options)
    if suffix in MARKDOWN_SUFFIXES:
        return iter_markdown(local, options)
    if suffix in HTML_SUFFIXES:
        return iter_html(local, options)
    if suffix in IMAGE_SUFFIXES:
        return image_with_sidecar(local, options)
    what = f"{suffix} files" if suffix else "files without a suffix"
    return _fail(text, f"no source reads {what}; supported: {_SUPPORTED}", Kind.UNSUPPORTED)


def _fail(source: str, reason: str, kind: Kind) -> Iterator[SourceResult]:
    yield SourceError(source=source, reason=reason, kind=kind)
