"""What every source shares: the image check, cache files, image references and the item builder.

Problems with one input are raised inside a source as :class:`BadInput` and turned into a
:class:`~rag.items.SourceError` value where that input is handled, so the run goes on. Failures of
the environment (the cache directory cannot be written) are ordinary ``OSError``s and do stop it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, UnidentifiedImageError

from rag.errors import RagError
from rag.items import MAX_TEXT_BYTES, UPLOAD_NAME, ImageRef, KnowledgeItem, Severity, SourceError, named
from rag.items import SourceErrorKind as Kind

from .later import Pending, SourceResult, map_items
from .options import SourceOptions

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

_SUFFIX_BY_FORMAT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tif"}


class BadInput(RagError):
    """A problem with one input; becomes a SourceError where that input is handled."""

    def __init__(self, kind: Kind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    def report(self, source: str) -> SourceError:
        return SourceError(source=source, reason=self.reason, kind=self.kind)


class ImageInfo(NamedTuple):
    mime_type: str
    suffix: str


class LoadedImage(NamedTuple):
    """An image file that passed the check: where it is, its bytes, and provenance for the item's metadata."""

    path: Path
    data: bytes
    mime_type: str
    metadata: dict[str, Any]


def check_image(data: bytes, max_pixels: int, *, decode: bool = True) -> ImageInfo:
    """Raise BadInput unless ``data`` is a complete image of at most ``max_pixels`` pixels.

    PNGs are checked with ``verify()`` (every chunk's CRC up to IEND, no decoding); other formats
    are decoded through a 1/8-scale draft. With ``decode=False`` only the header is read (format,
    size): for callers that decode every image fully later and report the broken ones themselves.
    """
    if not data:
        raise BadInput(Kind.EMPTY_FILE, "empty file (0 bytes)")
    fmt = "image"
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or fmt
            mime_type = im.get_format_mimetype() or "application/octet-stream"
            width, height = im.size
            if width * height > max_pixels:
                raise BadInput(
                    Kind.IMAGE_TOO_LARGE,
                    f"{width}x{height} image exceeds the {max_pixels}-pixel limit (decompression-bomb guard)",
                )
            if decode and fmt == "PNG":
                im.verify()
            elif decode:
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                im.load()
    except BadInput:
        raise
    except UnidentifiedImageError:
        claimed = _claimed_format(data)
        if claimed:
            raise BadInput(Kind.CORRUPT_IMAGE, f"starts like a {claimed} but cannot be read") from None
        raise BadInput(Kind.NOT_AN_IMAGE, "not an image (no known image format)") from None
    except Image.DecompressionBombError as e:
        # Pillow refuses past twice Image.MAX_IMAGE_PIXELS before the size can be read; its message holds the count.
        counted = re.search(r"\((\d+) pixels\)", str(e))
        image = f"{counted[1]}-pixel image" if counted else "image"
        raise BadInput(
            Kind.IMAGE_TOO_LARGE, f"{image} exceeds the {max_pixels}-pixel limit (decompression-bomb guard)"
        ) from None
    except Exception as e:  # decoders of untrusted bytes raise OSError, SyntaxError, struct.error, ...
        raise BadInput(Kind.CORRUPT_IMAGE, f"corrupt or truncated {fmt}: {e}") from None
    return ImageInfo(mime_type, _SUFFIX_BY_FORMAT.get(fmt, "." + fmt.lower()))


def _claimed_format(data: bytes) -> str | None:
    """The format an unreadable file's leading bytes announce, to tell a broken image from a non-image."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadInput(Kind.NOT_FOUND, "file not found") from None
    except IsADirectoryError:
        raise BadInput(Kind.UNSUPPORTED, "is a directory, not a file") from None
    except OSError as e:
        raise BadInput(Kind.UNREADABLE, f"cannot read: {e.strerror or e}") from None


def load_image_file(path: Path, options: SourceOptions, *, resolved: Path | None = None) -> LoadedImage:
    """The checked image file; ``resolved`` is its resolved path when the caller has it already."""
    data = read_file(path)
    info = check_image(data, options.max_image_pixels, decode=options.decode_check)
    return LoadedImage(resolved or path.resolve(), data, info.mime_type, {})


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks: an item's ``content_hash``."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def with_content_hash(results: Iterable[Pending], path: Path) -> Iterator[Pending]:
    """The results of one file, each item that has no content hash yet given the file's (hashed once, when the
    first item comes)."""
    digest: list[str] = []

    def hashed(item: KnowledgeItem) -> KnowledgeItem:
        if item.content_hash:
            return item
        if not digest:
            try:
                digest.append(file_sha256(path))
            except OSError:  # gone or unreadable since its reader read it: the item says it has no known hash
                digest.append("")
        return item.model_copy(update={"content_hash": digest[0]})

    return map_items(results, hashed)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a reader (or a killed run) never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_image(data: bytes, folder: str, options: SourceOptions) -> LoadedImage:
    """Check image bytes that have no file yet and keep them under ``cache_dir/folder``, named by their hash."""
    info = check_image(data, options.max_image_pixels, decode=options.decode_check)
    path = (options.cache_dir / folder / (hashlib.sha256(data).hexdigest()[:32] + info.suffix)).resolve()
    if not path.is_file():
        write_atomic(path, data)
    return LoadedImage(path, data, info.mime_type, {})


def parse_tags(value: Any) -> list[str]:
    """Tags as a list of strings, or one comma-separated string; raises ValueError otherwise."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError("tags must be a list of strings or a comma-separated string")
    return [t.strip() for t in value if t.strip()]


def clean_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()


def make_item(
    *,
    source: str,
    where: str,
    options: SourceOptions,
    text: str = "",
    image: LoadedImage | None = None,
    metadata: dict[str, Any] | None = None,
    tags: Iterable[str] = (),
    anchor: str = "",
    anchor_in_id: bool = True,
    chunked: bool = False,
    ref_doc_id: str = "",
    content_hash: str = "",
) -> Iterator[SourceResult]:
    """Yield the item (its document ``ref_doc_id``, by default its source), then one warning when its text is
    longer than the encoder's window (the vector reads its start, keyword search and display the whole) or than the
    store's text field (then it is cut to fit).
    ``chunked`` texts were cut to the window already and are not counted again."""
    kept = fit_text(text)
    yield KnowledgeItem.create(
        source=source,
        text=kept,
        image=ImageRef(uri=str(image.path), mime_type=image.mime_type) if image else None,
        image_bytes=image.data if image else None,
        metadata={**(metadata or {}), **(image.metadata if image else {})},
        tags=list(tags),
        anchor=anchor,
        anchor_in_id=anchor_in_id,
        ref_doc_id=ref_doc_id or source,
        content_hash=content_hash,
    )
    if len(kept) < len(text):
        reason = (
            f"text is {len(text.encode('utf-8'))} bytes, over the store's {MAX_TEXT_BYTES}-byte text field: "
            f"cut to its first {len(kept)} characters"
        )
        yield SourceError(source=where, reason=reason, kind=Kind.TEXT_TOO_LONG, severity=Severity.WARNING)
    elif not chunked and len(text) > options.window.text_tokens:
        tokens = options.window.count(text) + options.window.specials
        if tokens > options.window.window:
            reason = (
                f"text is {tokens} tokens, over the encoder's {options.window.window}-token window: its vector reads "
                "the start, keyword search and display the whole text"
            )
            yield SourceError(source=where, reason=reason, kind=Kind.TEXT_OVER_WINDOW, severity=Severity.WARNING)


def fit_text(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (at a character boundary)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def missing_caption(where: str, reason: str = "no caption; kept as an image-only item") -> SourceError:
    return SourceError(source=where, reason=reason, kind=Kind.MISSING_CAPTION, severity=Severity.WARNING)


def name_items(results: Iterable[Pending], base: str) -> Iterator[Pending]:
    """The results, each item named ``base`` (a file's path relative to what was ingested) plus ``#anchor``;
    an uploaded file keeps the name it was uploaded under (``rag.items.UPLOAD_NAME``)."""

    def renamed(item: KnowledgeItem) -> KnowledgeItem:
        upload = item.metadata.get(UPLOAD_NAME)
        stem = upload if isinstance(upload, str) and upload else base
        name = named(stem, item.anchor)
        return item if name == item.name else item.model_copy(update={"name": name})

    return map_items(results, renamed)
