"""A folder of images with sidecar captions: ``name.txt`` or ``name.json`` beside ``name.jpg``.

The folder is walked recursively in sorted order, skipping hidden files and folders and the
cache directory. A JSON sidecar is an object: ``text`` (or ``caption``) is the item's text,
``tags`` a list of strings (or one comma-separated string), every other key goes to metadata.
When both sidecars exist the JSON one is used and the other is reported. Images without a
caption become image-only items and are reported as ``missing_caption`` warnings; a ``.txt`` or
``.json`` file matching no image is reported as a ``bad_sidecar`` warning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import (
    IMAGE_SUFFIXES,
    BadInput,
    SourceResult,
    load_image_file,
    make_item,
    missing_caption,
    parse_tags,
    read_file,
)
from .options import SourceOptions

_SIDECAR_SUFFIXES = (".json", ".txt")


def iter_folder(root: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield one item per image under ``root`` (recursively, sorted), with its sidecar caption."""
    options = options or SourceOptions()
    root_path = Path(root).resolve()
    if not root_path.is_dir():
        yield SourceError(source=str(root_path), reason="not a directory", kind=Kind.NOT_FOUND)
        return
    cache_dir = options.cache_dir.resolve()
    walk_errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root_path, onerror=walk_errors.append):
        yield from _drain(walk_errors)
        current = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (current / d).resolve() != cache_dir)
        names = sorted(n for n in filenames if not n.startswith("."))
        image_stems = set()
        for name in names:
            path = current / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                image_stems.add(path.stem)
                yield from image_with_sidecar(path, options)
        for name in names:
            path = current / name
            if path.suffix in _SIDECAR_SUFFIXES and path.stem not in image_stems:
                yield SourceError(
                    source=str(path),
                    reason="caption file without a matching image",
                    kind=Kind.BAD_SIDECAR,
                    severity=Severity.WARNING,
                )
    yield from _drain(walk_errors)


def _drain(walk_errors: list[OSError]) -> Iterator[SourceError]:
    while walk_errors:
        e = walk_errors.pop(0)
        yield SourceError(source=str(e.filename), reason=f"cannot list: {e.strerror}", kind=Kind.UNREADABLE)


def image_with_sidecar(path: Path, options: SourceOptions) -> Iterator[SourceResult]:
    """Yield the item for one image file and whatever was wrong with it or its sidecar."""
    where = str(path.resolve())
    try:
        image = load_image_file(path, options)
    except BadInput as e:
        yield e.report(where)
        return
    sidecars = [s for s in (path.with_suffix(x) for x in _SIDECAR_SUFFIXES) if s.is_file()]
    text, tags, extra, problems = "", [], {}, []
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
    if sidecars:
        metadata["caption_path"] = str(sidecars[0].resolve())
    yield from make_item(
        source=where, where=where, options=options, text=text, image=image, metadata=metadata, tags=tags
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
