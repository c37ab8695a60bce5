"""A folder read whole: every file by the source its type calls for (``files``), images with sidecar captions
(``name.txt`` or ``name.json`` beside ``name.jpg``, see ``images``).

The folder is walked recursively in sorted order, skipping hidden files and folders and the
cache directory, following folder symlinks once. Items are named by their file's path inside the folder. A
caption file stays a caption: a ``.txt`` beside an image of the same stem is not a document; a ``.json`` file
matching no image is passed over, a ``.txt`` one read as a text document.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import IMAGE_SUFFIXES, SourceResult, name_items
from .files import passed_over
from .files import read_file as read_by_type
from .images import SIDECAR_SUFFIXES
from .later import Pending, in_order
from .options import SourceOptions


def iter_folder(
    root: str | os.PathLike[str], options: SourceOptions | None = None, *, only: Collection[str] | None = None
) -> Iterator[SourceResult]:
    """Yield the items of every file under ``root`` (recursively, sorted), each read by the source its type
    calls for and named by its path inside ``root``; files no source reads are passed over, each named.

    ``only``: absolute paths (as the folder's own, unresolved) of the files to read, as they would be read with the
    whole folder; an image is read when it or one of its captions is among them (``rag ingest --watch``).
    Pages and pictures read with OCR are read a few at a time in the workers a run lends (``later``), the
    results still in the folder's order."""
    return in_order(_folder_results(root, options or SourceOptions(), only))


def _folder_results(
    root: str | os.PathLike[str], options: SourceOptions, only: Collection[str] | None
) -> Iterator[Pending]:
    root_path = Path(root).absolute()
    if not root_path.is_dir():
        yield SourceError(source=str(root_path), reason="not a directory", kind=Kind.NOT_FOUND)
        return
    for entry in _walk(root_path, options.cache_dir.resolve()):
        if isinstance(entry, SourceError):
            yield entry
            continue
        current, names = entry
        images = {Path(n).stem for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES}
        for name in names:
            path = current / name
            if path.suffix.lower() in SIDECAR_SUFFIXES and path.stem in images:
                continue  # a caption, read with its image
            if only is not None and not _wanted(path, only):
                continue
            if path.suffix.lower() == ".json":
                yield from passed_over(path, "a .json file that is no image's caption")
                continue
            relative = path.relative_to(root_path).as_posix()
            yield from name_items(read_by_type(path, options, in_folder=True), relative)


def _wanted(path: Path, only: Collection[str]) -> bool:
    if str(path) in only:
        return True
    return path.suffix.lower() in IMAGE_SUFFIXES and any(str(path.with_suffix(x)) in only for x in SIDECAR_SUFFIXES)


def _walk(root: Path, cache_dir: Path) -> Iterator[tuple[Path, list[str]] | SourceError]:
    """Each folder under ``root`` with its file names, sorted, hidden ones and the cache left out; folder
    symlinks are followed once (a link back to a folder read already is reported, not followed)."""
    walk_errors: list[OSError] = []
    seen = {root.resolve()}
    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_errors.append, followlinks=True):
        yield from _drain(walk_errors)
        current = Path(dirpath)
        kept = []
        visible = [d for d in dirnames if not d.startswith(".")]
        for name in sorted(visible, key=lambda d: ((current / d).is_symlink(), d)):  # real folders before links
            real = (current / name).resolve()
            if real == cache_dir:
                continue
            if real in seen:
                reason = f"links to {real}, a folder read already (a symlink loop?): not read again"
                yield SourceError(
                    source=str(current / name), reason=reason, kind=Kind.SYMLINK_LOOP, severity=Severity.WARNING
                )
                continue
            seen.add(real)
            kept.append(name)
        dirnames[:] = sorted(kept)
        yield current, sorted(n for n in filenames if not n.startswith("."))
    yield from _drain(walk_errors)


def _drain(walk_errors: list[OSError]) -> Iterator[SourceError]:
    while walk_errors:
        e = walk_errors.pop(0)
        yield SourceError(source=str(e.filename), reason=f"cannot list: {e.strerror}", kind=Kind.UNREADABLE)
