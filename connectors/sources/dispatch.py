"""Pick the source for each path: folder, manifest, PDF, Markdown/HTML document, image file or URL.

Every item read from a local path is named relative to that path (``rag.items.SOURCE_NAME``): a
folder's images by their path inside it, a file's items by the file's own name.
"""

from __future__ import annotations

import os
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from rag.items import SOURCE_NAME, KnowledgeItem, SourceError
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
        return _named(iter_folder(local, options), {str(local.resolve()) + os.sep: ""})
    return _named(_open_file(text, local, options), {text: local.name, str(local.resolve()): local.name})


def _open_file(text: str, local: Path, options: SourceOptions) -> Iterator[SourceResult]:
    scheme = urlsplit(text).scheme.lower()
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


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme.lower() in ("http", "https")


def _named(results: Iterator[SourceResult], names: dict[str, str]) -> Iterator[SourceResult]:
    """The results, each item named unless its source named it already: a source starting with a key of
    ``names`` (the path as given or resolved) gets that key replaced by its value (a folder: nothing; a file:
    its own name), so ``/data/photos/a/b.jpg`` read from ``photos`` is ``a/b.jpg``, ``doc.pdf#page=2`` stays so."""
    prefixes = sorted(names, key=len, reverse=True)
    for result in results:
        if isinstance(result, KnowledgeItem) and SOURCE_NAME not in result.metadata:
            prefix = next((p for p in prefixes if result.source.startswith(p)), None)
            if prefix is not None:
                metadata = {**result.metadata, SOURCE_NAME: names[prefix] + result.source[len(prefix) :]}
                result = result.model_copy(update={"metadata": metadata})
        yield result
