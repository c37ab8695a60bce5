"""A folder read whole: every file by the source its type calls for (``files``), images with sidecar captions
(``name.txt`` or ``name.json`` beside ``name.jpg``).

The folder is walked recursively in sorted order, skipping hidden files and folders and the
cache directory, following folder symlinks once. Items are named by their file's path inside the folder. A
caption file stays a caption: a ``.txt`` beside an image of the same stem is not a document. A JSON sidecar is
an object: ``text`` (or ``caption``) is the item's text, ``tags`` a list of strings (or one comma-separated
string), every other key goes to metadata. When both sidecars exist the JSON one is used and the other is
reported. Images without a caption become image-only items and are reported as ``missing_caption`` warnings; a
``.json`` file matching no image is passed over, a ``.txt`` one read as a text document.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import (
    IMAGE_SUFFIXES,
    BadInput,
    SourceResult,
    load_image_file,
    make_item,
    missing_caption,
    name_items,
    parse_tags,
    read_file,
)
from .files import passed_over
from .files import read_file as read_by_type
from .ocr import TEXT_ORIGIN, ocr_installed, read_pixels
from .options import SourceOptions

#: The files beside an image that caption it (x.txt or x.json beside x.png).
SIDECAR_SUFFIXES = (".json", ".txt")


def iter_folder(
    root: str | os.PathLike[str], options: SourceOptions | None = None, *, only: Collection[str] | None = None
) -> Iterator[SourceResult]:
    """Yield the items of every file under ``root`` (recursively, sorted), each read by the source its type
    calls for and named by its path inside ``root``; files no source reads are passed over, each named.

    ``only``: absolute paths (as the folder's own, unresolved) of the files to read, as they would be read with the
    whole folder; an image is read when it or one of its captions is among them (``rag ingest --watch``)."""
    options = options or SourceOptions()
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


def image_with_sidecar(path: Path, options: SourceOptions) -> Iterator[SourceResult]:
    """Yield the item for one image file and whatever was wrong with it or its sidecar."""
    resolved = path.resolve()
    where = str(resolved)
    try:
        image = load_image_file(path, options, resolved=resolved)
    except BadInput as e:
        yield e.report(where)
        return
    sidecars = [s for s in (path.with_suffix(x) for x in SIDECAR_SUFFIXES) if s.is_file()]
    text, problems = "", []
    tags: list[str] = []
    extra: dict[str, Any] = {}
    if sidecars:
        try:
            text, tags, extra = _read_sidecar(sidecars[0])
        except BadInput as e:
            problems.append(e.report(str(sidecars[0].resolve())))
        if len(sidecars) > 1:
            problems.append(
                SourceError(
                    source=str(sidecars[1].resolve()),
                    reason=f"ignored: {sidecars[0].name} is used for the caption",
                    kind=Kind.BAD_SIDECAR,
                    severity=Severity.WARNING,
                )
            )
    metadata = {**extra, "file_path": where, "file_name": path.name}
    if options.ocr == "all" and ocr_installed():  # a screenshot, a photo of a slide, a scan saved as a picture
        try:
            with Image.open(io.BytesIO(image.data)) as pixels:
                read = read_pixels(pixels, options.max_image_pixels)
        except BadInput as e:
            problems.append(e.report(where))
            read = ""
        except (OSError, ValueError, SyntaxError):
            read = ""  # a broken image: the preprocessing stage names it
        if read:
            text = f"{text}\n\n{read}" if text else read
            metadata[TEXT_ORIGIN] = "caption+ocr" if sidecars and text != read else "ocr"
    if sidecars:
        metadata["caption_path"] = str(sidecars[0].resolve())
    yield from make_item(
        source=where,
        where=where,
        options=options,
        text=text,
        image=image,
        metadata=metadata,
        tags=tags,
        content_hash=hashlib.sha256(image.data).hexdigest(),  # the file's bytes, read once
    )
    yield from problems
    if not text and not problems:
        reason = "caption file is empty" if sidecars else f"no {path.stem}.txt or {path.stem}.json beside it"
        yield missing_caption(where, f"{reason}; kept as an image-only item")


def _read_sidecar(path: Path) -> tuple[str, list[str], dict[str, Any]]:
    """Text, tags and extra metadata from a ``.txt`` or ``.json`` sidecar."""
    raw = read_file(path)
    if path.suffix == ".txt":
        try:
            return raw.decode("utf-8-sig").strip(), [], {}
        except UnicodeDecodeError as e:
            raise BadInput(Kind.BAD_SIDECAR, f"not valid UTF-8: {e}") from None
    try:
        obj = json.loads(raw)
    except ValueError as e:
        raise BadInput(Kind.BAD_SIDECAR, f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadInput(Kind.BAD_SIDECAR, "a JSON sidecar must be an object")
    text_key = next((k for k in ("text", "caption") if k in obj), None)
    text = obj.pop(text_key) if text_key else None
    if text is None:
        text = ""
    elif not isinstance(text, str):
        raise BadInput(Kind.BAD_SIDECAR, f"{text_key!r} must be a string")
    try:
        tags = parse_tags(obj.pop("tags", None))
    except ValueError as e:
        raise BadInput(Kind.BAD_SIDECAR, str(e)) from None
    return text.strip(), tags, obj
