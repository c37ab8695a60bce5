"""Settings shared by every source, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.embeddings.text_window import DEFAULT_WINDOW, TextWindow
from rag.settings import Settings


class SourceOptions(BaseModel):
    """How sources read a corpus; unknown option names are refused so a typo does not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    cache_dir: Path = Field(
        default=Path("rag_data"),
        description="Where rendered PDF pages, extracted figures, inline and downloaded images are "
        "written, so that every ImageRef points at a local file.",
    )
    allow_urls: bool = Field(default=False, description="Fetch http(s) images; off by default.")
    local_root: Path | None = Field(
        default=None,
        description="When set, local images that manifests and documents name (paths, file: URIs) must resolve "
        "inside this folder, symlinks followed; others are refused as bad references. For corpora from untrusted "
        "hands, such as uploads.",
    )
    max_download_bytes: int = Field(default=20 * 1024 * 1024, gt=0, description="Size cap for one fetched image.")
    url_timeout: float = Field(default=15.0, gt=0, description="Seconds allowed for one download, connection included.")
    text_window: Any = Field(
        default=None,
        description="The encoder's token counter and window (rag.embeddings.text_window.TextWindow, from "
        "encoder.text_window or registry.load_text_window): document text is chunked to fit it, and a caption "
        "over it is reported. None: tokens estimated, a 512-token window.",
    )
    chunk_overlap: int = Field(default=32, ge=0, description="Tokens each text chunk repeats from the one before it.")
    max_chunks_per_document: int = Field(
        default=2000, gt=0, description="Text chunks one document may give; the rest is left out with a warning."
    )
    max_images_per_document: int = Field(
        default=500, gt=0, description="Images one Markdown/HTML/DOCX/PPTX document may give; the rest with a warning."
    )
    max_document_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Largest Markdown/HTML file read whole, and largest uncompressed DOCX/PPTX (zip-bomb guard); "
        "plain text files are streamed and capped by max_chunks_per_document instead.",
    )
    max_image_pixels: int = Field(
        default=89_478_485,
        gt=0,
        description="Decompression-bomb guard: images with more pixels are refused (PIL's default limit).",
    )
    decode_check: bool = Field(
        default=True,
        description="Decode each image (JPEG at 1/8 scale) to catch truncated or corrupt files here. Ingestion "
        "turns it off: its preprocessing stage decodes every image fully anyway and reports the broken ones, so "
        "a second decode on the single reader thread would only slow it down.",
    )
    image_columns: tuple[str, ...] = Field(
        default=("image", "image_path", "url"), description="Manifest columns holding the image, first present wins."
    )
    text_columns: tuple[str, ...] = Field(
        default=("text", "caption"), description="Manifest columns holding the text, first present wins."
    )
    tags_column: str = Field(default="tags", description="Manifest column holding tags (a list, or comma-separated).")
    pdf_dpi: float = Field(default=144.0, gt=0, description="Resolution at which PDF pages are rendered.")
    pdf_figures: bool = Field(default=True, description="Also yield images embedded in PDF pages as their own items.")
    min_figure_pixels: int = Field(
        default=64, ge=1, description="Embedded PDF images whose shorter side is smaller (icons, rules) are skipped."
    )
    figure_context_pt: float = Field(
        default=72.0, ge=0, description="Height in points of the band above and below a PDF figure read as its text."
    )
    ocr: Literal["auto", "all", "off"] = Field(
        default="auto",
        description="When to read text from pixels (the OCR extra, mmrag[ocr]): auto, PDF pages with an empty or "
        "nearly empty text layer; all, standalone pictures as well; off, never.",
    )
    context_chars: int = Field(
        default=1000, gt=0, description="Cap on the surrounding text taken for an image in a Markdown/HTML document."
    )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, text_window: TextWindow | None = None, **fields: Any
    ) -> SourceOptions:
        """The options ``settings`` name: ``RAG_DATA_DIR`` (the cache), ``RAG_ALLOW_URLS``, ``RAG_URL_MAX_BYTES``,
        ``RAG_URL_TIMEOUT``, ``RAG_CHUNK_SIZE``, ``RAG_CHUNK_OVERLAP`` and ``RAG_OCR``, with ``fields`` (any other
        option, or one of these as a command's flag gave it) in their place. Every command, the server and the
        Python API build their options here.

        ``text_window``: the encoder's tokenizer and window (``encoder.text_window``, or
        ``registry.load_text_window`` before the model loads), cut here to ``RAG_CHUNK_SIZE``; None: tokens
        estimated over a 512-token window, cut the same.
        """
        window = text_window if text_window is not None else TextWindow(None, DEFAULT_WINDOW)
        named: dict[str, Any] = {
            "cache_dir": settings.data_dir,
            "allow_urls": settings.allow_urls,
            "max_download_bytes": settings.url_max_bytes,
            "url_timeout": settings.url_timeout,
            "text_window": window.capped(settings.chunk_size),
            "chunk_overlap": settings.chunk_overlap,
            "ocr": settings.ocr,
        }
        return cls(**{**named, **fields})

    @field_validator("text_window")
    @classmethod
    def _a_window(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, TextWindow):
            raise ValueError("text_window must be a rag.embeddings.text_window.TextWindow")
        return value

    @property
    def window(self) -> TextWindow:
        """The window to chunk to: ``text_window``, else an estimate over 512 tokens."""
        return self.text_window if self.text_window is not None else TextWindow(None, DEFAULT_WINDOW)
