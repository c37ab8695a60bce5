"""An image file as an item, captioned by its sidecar: ``name.txt`` or ``name.json`` beside ``name.jpg``.

A JSON sidecar is an object: ``text`` (or ``caption``) is the item's text, ``tags`` a list of strings (or one
comma-separated string), every other key goes to metadata. When both sidecars exist the JSON one is used and the
other is reported. An image without a caption becomes an image-only item, reported as a ``missing_caption``
warning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import (
    BadInput,
    LoadedImage,
    SourceResult,
    load_image_file,
    make_item,
    missing_caption,
    parse_tags,
    read_file,
)
from .later import Later, Pending
from .ocr import TEXT_ORIGIN, ocr_installed, ocr_result, start_ocr
from .options import SourceOptions

#: The suffixes of an image's caption files, in the order they are preferred.
SIDECAR_SUFFIXES = (".json", ".txt")


def image_with_sidecar(path: Path, options: SourceOptions) -> Iterator[Pending]:
    """Yield the item for one image file and whatever was wrong with it or its sidecar; with ``ocr="all"`` the
    item comes ``Later``, once OCR has read the picture."""
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
    if sidecars:
        metadata["caption_path"] = str(sidecars[0].resolve())
    item = _ImageItem(path, where, image, text, tags, metadata, problems, bool(sidecars), options)
    if options.ocr == "all" and ocr_installed():  # a screenshot, a photo of a slide, a scan saved as a picture
        yield Later(start_ocr(image.data, options.max_image_pixels), item.read)
    else:
        yield from item("")


@dataclass(frozen=True)
class _ImageItem:
    """An image's item, made once the text OCR finds in it is known."""

    path: Path
    where: str
    image: LoadedImage
    caption: str
    tags: list[str]
    metadata: dict[str, Any]
    problems: list[SourceError]
    captioned: bool
    options: SourceOptions

    def read(self, done: Future[str]) -> Iterator[SourceResult]:
        read, problems = ocr_result(done, self.where)
        yield from self(read, problems)

    def __call__(self, read: str, ocr_problems: Iterable[SourceError] = ()) -> Iterator[SourceResult]:
        text, metadata = self.caption, self.metadata
        if read:
            text = f"{text}\n\n{read}" if text else read
            metadata = {**metadata, TEXT_ORIGIN: "caption+ocr" if self.caption else "ocr"}
        yield from make_item(
            source=self.where,
            where=self.where,
            options=self.options,
            text=text,
            image=self.image,
            metadata=metadata,
            tags=self.tags,
            content_hash=hashlib.sha256(self.image.data).hexdigest(),  # the file's bytes, read once
        )
        problems = [*self.problems, *ocr_problems]
        yield from problems
        if not text and not problems:
            reason = (
                "caption file is empty"
                if self.captioned
                else f"no {self.path.stem}.txt or {self.path.stem}.json beside it"
            )
            yield missing_caption(self.where, f"{reason}; kept as an image-only item")


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
