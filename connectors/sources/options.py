"""Settings shared by every source, in one place."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SourceOptions(BaseModel):
    """How sources read a corpus; unknown option names are refused so a typo does not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
    max_text_chars: int | None = Field(
        default=8000,
        gt=0,
        description="Texts longer than this are kept whole but reported as a warning (the encoder "
        "truncates to its own token limit); None turns the report off.",
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
    context_chars: int = Field(
        default=1000, gt=0, description="Cap on the surrounding text taken for an image in a Markdown/HTML document."
    )
