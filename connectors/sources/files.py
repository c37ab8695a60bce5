"""Which source reads a local file, by its type: the one table folders and explicit paths share.

| suffix | read by | becomes |
|---|---|---|
| image (.jpg .png …) | ``images.image_with_sidecar`` | an image(+text) item; ``x.txt``/``x.json`` is its caption |
| .pdf | ``pdf.iter_pdf`` | page images, page text chunks, figures |
| .md .markdown .html .htm | ``documents`` | text chunks by section, images with their context |
| .txt | ``text.iter_text`` | text chunks |
| .docx .pptx | ``office`` | text chunks by section or slide, embedded pictures |
| .jsonl .ndjson .csv | ``manifest.iter_manifest`` | one item per row (in a folder: only with a manifest's columns) |

Anything else is passed over: in a folder, named in one ``passed_over`` warning per file; given explicitly, an
``unsupported`` error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import IMAGE_SUFFIXES, SourceResult
from .documents import HTML_SUFFIXES, MARKDOWN_SUFFIXES, iter_html, iter_markdown
from .images import image_with_sidecar
from .manifest import JSONL_SUFFIXES, iter_manifest, manifest_columns
from .office import iter_docx, iter_pptx
from .options import SourceOptions
from .pdf import iter_pdf
from .text import TEXT_SUFFIXES, iter_text

MANIFEST_SUFFIXES = (*JSONL_SUFFIXES, ".csv")
_READERS = {
    ".pdf": iter_pdf,
    **dict.fromkeys(MARKDOWN_SUFFIXES, iter_markdown),
    **dict.fromkeys(HTML_SUFFIXES, iter_html),
    **dict.fromkeys(TEXT_SUFFIXES, iter_text),
    ".docx": iter_docx,
    ".pptx": iter_pptx,
}
#: Every suffix some source reads.
SUPPORTED_SUFFIXES = frozenset({*IMAGE_SUFFIXES, *_READERS, *MANIFEST_SUFFIXES})
SUPPORTED = (
    "a folder, .jsonl/.ndjson/.csv manifests, .pdf, .md/.markdown/.html/.htm, .txt, .docx, .pptx, "
    f"image files ({'/'.join(sorted(IMAGE_SUFFIXES))}) or http(s) image URLs"
)


def read_file(path: Path, options: SourceOptions, *, in_folder: bool) -> Iterator[SourceResult]:
    """Items and errors from one local file, read by the source its type calls for."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return image_with_sidecar(path, options)
    if suffix in _READERS:
        return _READERS[suffix](path, options)
    if suffix in MANIFEST_SUFFIXES:
        if in_folder and not manifest_columns(path, options):
            columns = ", ".join((*options.image_columns, *options.text_columns))
            return passed_over(path, f"not a manifest: no column named {columns}")
        return iter_manifest(path, options)
    what = f"{suffix} files" if suffix else "files without a suffix"
    if in_folder:
        return passed_over(path, f"no source reads {what}")
    reason = f"no source reads {what}; supported: {SUPPORTED}"
    return iter([SourceError(source=str(path), reason=reason, kind=Kind.UNSUPPORTED)])


def passed_over(path: Path, why: str) -> Iterator[SourceResult]:
    yield SourceError(source=str(path), reason=f"passed over: {why}", kind=Kind.PASSED_OVER, severity=Severity.WARNING)
