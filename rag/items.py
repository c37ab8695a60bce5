"""The unit that flows from sources to the store: a knowledge item, and the error value a source yields instead."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field, model_validator

#: Metadata key: the item's name (:attr:`KnowledgeItem.name`), where an item is shown as a node.
NAME = "name"
#: Metadata key: the file name an item had when it was uploaded to `rag serve`.
UPLOAD_NAME = "upload_name"
#: Metadata keys that hold paths on the machine that read the sources.
PATH_METADATA = ("file_path", "caption_path", "manifest")
#: The tenant of items written without one (the partition every collection has).
DEFAULT_TENANT = "default"
#: The longest text an item keeps, in UTF-8 bytes (the store's text field holds no more); sources cut longer ones.
MAX_TEXT_BYTES = 65_535


def item_name(source: str, metadata: Mapping[str, Any]) -> str:
    """What to call an item without showing paths: its stored name, else its upload name, else the last part
    of an absolute path source; other sources (URLs, ids) as they are."""
    for key in (NAME, UPLOAD_NAME):
        name = metadata.get(key)
        if isinstance(name, str) and name:
            return name
    return default_name(source)


def default_name(source: str, anchor: str = "") -> str:
    """A name for an item no folder named: the file name of an absolute path (else the source), plus the anchor."""
    return named(Path(source).name if os.path.isabs(source) else source, anchor)


def named(document: str, anchor: str = "") -> str:
    """The name of the item at ``anchor`` in ``document``: ``guide/install.md#linux``."""
    return f"{document}#{anchor}" if anchor else document


def document_of(name: str) -> str:
    """The document part of a name: ``guide/install.md`` of ``guide/install.md#linux``."""
    return name.split("#", 1)[0]


def link_fragment(anchor: str) -> str:
    """The part of an anchor a link opens at: without the chunk number, which only keeps names apart
    (``install&chunk=2`` opens at ``install``, ``line=4,9&chunk=3`` at ``line=4,9``, ``chunk=2`` at the top)."""
    return re.sub(r"(^|&)chunk=\d+", "", anchor).lstrip("&")


def moved_to(name: str, document: str) -> str:
    """``name`` with its document replaced by ``document``; what followed the document (its anchor) stays."""
    return document + name[len(document_of(name)) :]


def file_name_of(name: str) -> str:
    """The file name of a name's document: ``install.md`` of ``guide/install.md#linux`` (URLs: the last segment)."""
    return document_of(name).rstrip("/").rsplit("/", 1)[-1]


class Modality(str, Enum):
    IMAGE_TEXT = "image+text"
    IMAGE = "image"
    TEXT = "text"


class ImageRef(BaseModel):
    """Where an item's image lives: a local path or an http(s) URL, never the pixels themselves."""

    uri: str = Field(description="Absolute local path or http(s) URL of the image.")
    mime_type: str | None = Field(default=None, description="e.g. image/jpeg")
    sha256: str | None = Field(
        default=None,
        description="SHA-256 (hex) of the image bytes, when the item was made from them: same digest, same picture.",
    )
    thumbnail: bytes | None = Field(default=None, description="Optional small JPEG/PNG preview.")


class KnowledgeItem(BaseModel):
    """One searchable piece of knowledge: an image, a text, or both, with provenance and metadata."""

    id: str = Field(description="Stable content id: hash of image bytes, text and source.")
    text: str = ""
    image: ImageRef | None = None
    source: str = Field(
        description="The document the item came from (absolute file path, manifest, URL): a re-ingest of it "
        "replaces exactly the items it no longer yields."
    )
    anchor: str = Field(
        default="", description="Where in its document the item lies, e.g. page=7&chunk=2, install-2, slide=3."
    )
    name: str = Field(
        default="",
        description="What every surface calls the item: its path relative to what was ingested, plus #anchor; "
        "ingest keeps it unique in the collection (rag.ingest.names).",
    )
    ref_doc_id: str = Field(
        default="",
        description="The item's document, the unit a re-ingest replaces: the absolute path of a file our sources "
        "read (for a manifest row, the image it lists), a URL, a LlamaIndex ref_doc_id/doc_id, an upload. "
        "Defaults to the source.",
    )
    content_hash: str = Field(
        default="", description="SHA-256 (hex) of the source file's bytes; empty when the item has no file."
    )
    tenant: str = Field(default=DEFAULT_TENANT, description="Who the item belongs to on a shared server.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @model_validator(mode="before")
    @classmethod
    def _document_defaults_to_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("ref_doc_id") and data.get("source"):
            return {**data, "ref_doc_id": data["source"]}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def modality(self) -> Modality:
        if self.image is not None and self.text:
            return Modality.IMAGE_TEXT
        return Modality.IMAGE if self.image is not None else Modality.TEXT

    @classmethod
    def create(
        cls,
        *,
        source: str,
        text: str = "",
        image: ImageRef | None = None,
        image_bytes: bytes | None = None,
        anchor: str = "",
        name: str = "",
        anchor_in_id: bool = True,
        **fields: Any,
    ) -> KnowledgeItem:
        """Build an item whose id is derived from its content and place (source and, unless ``anchor_in_id`` is
        off, anchor), so re-ingesting the same content is a no-op; ``name`` defaults to :func:`default_name`
        (of the upload name, if any)."""
        if image is None and not text:
            raise ValueError(f"{source}: an item needs an image, a text, or both")
        if image is not None and image_bytes is not None:
            image = image.model_copy(update={"sha256": hashlib.sha256(image_bytes).hexdigest()})
        return cls(
            id=content_id(source, text, image_bytes, anchor if anchor_in_id else ""),
            source=source,
            text=text,
            image=image,
            anchor=anchor,
            name=name or default_name(fields.get("metadata", {}).get(UPLOAD_NAME) or source, anchor),
            **fields,
        )


def content_id(source: str, text: str, image_bytes: bytes | None, anchor: str = "") -> str:
    """The id of an item: a hash of its image bytes, text, source and (when it has one) anchor."""
    h = hashlib.sha256()
    parts = (image_bytes or b"", text.encode("utf-8"), source.encode("utf-8"))
    for part in parts + ((anchor.encode("utf-8"),) if anchor else ()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


class Severity(str, Enum):
    ERROR = "error"  # the input, or part of it, was skipped
    WARNING = "warning"  # nothing was lost, but something needs a look


class SourceErrorKind(str, Enum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    UNREADABLE = "unreadable"
    UNSUPPORTED = "unsupported"
    EMPTY_FILE = "empty_file"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_TOO_LARGE = "image_too_large"
    MISSING_CAPTION = "missing_caption"
    TEXT_TOO_LONG = "text_too_long"
    TEXT_OVER_WINDOW = "text_over_window"
    BAD_SIDECAR = "bad_sidecar"
    BAD_ROW = "bad_row"
    BAD_REFERENCE = "bad_reference"
    UNREADABLE_PDF = "unreadable_pdf"
    URL_DISABLED = "url_disabled"
    FETCH_FAILED = "fetch_failed"
    NO_IMAGES = "no_images"
    PASSED_OVER = "passed_over"
    UNREADABLE_DOCUMENT = "unreadable_document"
    NOT_TEXT = "not_text"
    NO_TEXT_LAYER = "no_text_layer"
    OCR_FAILED = "ocr_failed"
    TOO_MANY_CHUNKS = "too_many_chunks"
    TOO_MANY_IMAGES = "too_many_images"
    SYMLINK_LOOP = "symlink_loop"
    RENAMED = "renamed"


class SourceError(BaseModel):
    """A bad input a source met: reported, never raised, so one bad file does not stop a run."""

    source: str = Field(description="The file, manifest line (path:line), PDF page (path#page=N) or URL.")
    reason: str
    kind: SourceErrorKind = SourceErrorKind.INVALID
    severity: Severity = Field(
        default=Severity.ERROR,
        description="error: the input, or part of it, was skipped; warning: nothing was lost, but it needs a look.",
    )
