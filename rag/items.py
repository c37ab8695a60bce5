"""The unit that flows from sources to the store: a knowledge item, and the error value a source yields instead."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, Field, computed_field


#: Metadata key: the item's source named relative to the folder (or beside the file) it was ingested from.
SOURCE_NAME = "source_name"
#: Metadata key: the file name an item had when it was uploaded to `rag serve`.
UPLOAD_NAME = "upload_name"
#: Metadata keys that hold paths on the machine that read the sources.
PATH_METADATA = ("file_path", "caption_path", "manifest")


def item_name(source: str, metadata: Mapping[str, Any]) -> str:
    """What to call an item without showing paths: its upload name, else its name relative to the ingested
    folder, else the last part of an absolute path source; other sources (URLs, ids) as they are."""
    for key in (UPLOAD_NAME, SOURCE_NAME):
        name = metadata.get(key)
        if isinstance(name, str) and name:
            return name
    return Path(source).name if os.path.isabs(source) else source


class Modality(str, Enum):
    IMAGE_TEXT = "image+text"
    IMAGE = "image"
    TEXT = "text"


class ImageRef(BaseModel):
    """Where an item's image lives: a local path or an http(s) URL, never the pixels themselves."""

    uri: str = Field(description="Absolute local path or http(s) URL of the image.")
    mime_type: str | None = Field(default=None, description="e.g. image/jpeg")
    sha256: str | None = Field(
        default=None, description="SHA-256 (hex) of the image bytes, when the item was made from them: same digest, same picture."
    )
    thumbnail: bytes | None = Field(default=None, description="Optional small JPEG/PNG preview.")


class KnowledgeItem(BaseModel):
    """One searchable piece of knowledge: an image, a text, or both, with provenance and metadata."""

    id: str = Field(description="Stable content id: hash of image bytes, text and source.")
    text: str = ""
    image: ImageRef | None = None
    source: str = Field(description="Where the item came from (file, manifest row, PDF page, URL).")
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

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
        **fields: Any,
    ) -> "KnowledgeItem":
        """Build an item whose id is derived from its content, so re-ingesting the same content is a no-op."""
        if image is None and not text:
            raise ValueError(f"{source}: an item needs an image, a text, or both")
        if image is not None and image_bytes is not None:
            image = image.model_copy(update={"sha256": hashlib.sha256(image_bytes).hexdigest()})
        return cls(id=content_id(source, text, image_bytes), source=source, text=text, image=image, **fields)


def content_id(source: str, text: str, image_bytes: bytes | None) -> str:
    h = hashlib.sha256()
    for part in (image_bytes or b"", text.encode("utf-8"), source.encode("utf-8")):
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
    BAD_SIDECAR = "bad_sidecar"
    BAD_ROW = "bad_row"
    BAD_REFERENCE = "bad_reference"
    UNREADABLE_PDF = "unreadable_pdf"
    URL_DISABLED = "url_disabled"
    FETCH_FAILED = "fetch_failed"
    NO_IMAGES = "no_images"


class SourceError(BaseModel):
    """A bad input a source met: reported, never raised, so one bad file does not stop a run."""

    source: str = Field(description="The file, manifest line (path:line), PDF page (path#page=N) or URL.")
    reason: str
    kind: SourceErrorKind = SourceErrorKind.INVALID
    severity: Severity = Field(
        default=Severity.ERROR,
        description="error: the input, or part of it, was skipped; warning: nothing was lost, but it needs a look.",
    )
