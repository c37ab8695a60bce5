"""Pick the source for each path: a folder (read whole), a file by its type (``files``), or a URL.

Every item read from a local path is named relative to that path (``KnowledgeItem.name``): a folder's items
by their file's path inside it, a file's items by the file's own name, each plus its anchor.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rag.items import KnowledgeItem, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import SourceResult, name_items
from .files import read_file
from .folder import iter_folder
from .later import in_order
from .options import SourceOptions
from .urls import iter_urls


def open_sources(
    paths: Sequence[str | os.PathLike[str]], options: SourceOptions | None = None, **fields: Any
) -> Iterator[SourceResult]:
    """Items and errors from every path in turn, each read by the source its type calls for.

    ``options``: how to read them (``SourceOptions.from_settings(settings)`` reads them as ``rag ingest`` does), or
    else ``fields``, the fields of :class:`SourceOptions` (an unknown name raises at once).
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"open_sources takes a sequence of paths, not one path: use [{os.fspath(paths)!r}]")
    if options is not None and fields:
        raise TypeError(f"give open_sources options or fields, not both: {', '.join(sorted(fields))}")
    opts = options if options is not None else SourceOptions(**fields)
    return (result for path in paths for result in open_source(path, opts))


def missing_sources(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The paths that name neither an http(s) URL nor an existing file or folder: to refuse before a run starts."""
    return [
        os.fspath(path)
        for path in paths
        if not _is_url(os.fspath(path)) and not Path(os.fspath(path)).expanduser().exists()
    ]


def peek_items(results: Iterable[SourceResult]) -> tuple[bool, Iterator[SourceResult]]:
    """Read ``results`` up to their first item: whether there is one, and every result again, those read included.

    A run that would find nothing can then say so before it loads a model or creates a collection.
    """
    iterator = iter(results)
    read: list[SourceResult] = []
    for result in iterator:
        read.append(result)
        if isinstance(result, KnowledgeItem):
            return True, chain(read, iterator)
    return False, iter(read)


def open_source(path: str | os.PathLike[str], options: SourceOptions) -> Iterator[SourceResult]:
    """Items and errors from one path; a path no source can read yields one ``unsupported`` error."""
    text = os.fspath(path)
    if _is_url(text):
        return iter_urls([text], options)
    local = Path(text)
    if local.is_dir():
        return iter_folder(local, options)
    if not local.exists():
        if "://" in text:
            scheme = urlsplit(text).scheme.lower()
            return _fail(text, f"unsupported URL scheme {scheme!r}; only http(s) URLs are fetched", Kind.UNSUPPORTED)
        return _fail(text, "no such file or directory", Kind.NOT_FOUND)
    return in_order(name_items(read_file(local, options, in_folder=False), local.name))


def _fail(source: str, reason: str, kind: Kind) -> Iterator[SourceResult]:
    yield SourceError(source=source, reason=reason, kind=kind)


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme.lower() in ("http", "https")
