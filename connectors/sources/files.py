"""Which source reads a local file, by its type: the one table folders and explicit paths share.

| suffix | read by | becomes |
|---|---|---|
| image (.jpg .png …) | ``images.image_with_sidecar`` | an image(+text) item; ``x.txt``/``x.json`` is its caption |
| .pdf | ``pdf.pdf_results`` | page images, page text chunks, figures |
| .md .markdown .html .htm | ``documents`` | text chunks by section, images with their context |
| .rst .rest | ``rst.iter_rst`` | as Markdown, sections read by docutils |
| .svg | ``svg.iter_svg`` | the drawing rendered, with its words |
| .txt | ``text.iter_text`` | text chunks |
| .docx .pptx | ``office`` | text chunks by section or slide, embedded pictures |
| .xlsx .xlsm .xls .ods, other .csv | ``tables.iter_table`` | rows as text chunks under the header row |
| .jsonl .ndjson .csv | ``manifest.iter_manifest`` | one item per row (a .csv only with a manifest's columns) |
| anything else | ``text.iter_plain`` | text chunks, when the content is text (``text.sniff_text``) |

``name.ext.gz`` is read as ``name.ext`` would be, unpacked on the way (``compressed``). A file of another type
that is binary is passed over: in a folder, named in one ``passed_over`` warning per file; given explicitly, an
``unsupported`` error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import IMAGE_SUFFIXES, SourceResult, with_content_hash
from .compressed import is_gzip, real_suffix
from .documents import HTML_SUFFIXES, MARKDOWN_SUFFIXES, iter_html, iter_markdown
from .images import image_with_sidecar
from .later import Pending
from .manifest import JSONL_SUFFIXES, iter_manifest, manifest_columns
from .office import iter_docx, iter_pptx
from .options import SourceOptions
from .pdf import pdf_results
from .rst import RST_SUFFIXES, iter_rst
from .svg import SVG_SUFFIXES, iter_svg
from .tables import WORKBOOK_SUFFIXES, iter_table
from .text import TEXT_SUFFIXES, iter_plain, iter_text, sniff_text

MANIFEST_SUFFIXES = (*JSONL_SUFFIXES, ".csv")
_READERS = {
    ".pdf": pdf_results,
    **dict.fromkeys(MARKDOWN_SUFFIXES, iter_markdown),
    **dict.fromkeys(HTML_SUFFIXES, iter_html),
    **dict.fromkeys(RST_SUFFIXES, iter_rst),
    **dict.fromkeys(SVG_SUFFIXES, iter_svg),
    **dict.fromkeys(TEXT_SUFFIXES, iter_text),
    **dict.fromkeys(WORKBOOK_SUFFIXES, iter_table),
    ".docx": iter_docx,
    ".pptx": iter_pptx,
}
#: Every suffix some source reads (and any of them with ``.gz`` after it; files of other types are read when
#: their content is text).
SUPPORTED_SUFFIXES = frozenset({*IMAGE_SUFFIXES, *_READERS, *MANIFEST_SUFFIXES})
SUPPORTED = (
    "a folder, .jsonl/.ndjson manifests, .csv manifests or tables, .pdf, .md/.markdown/.html/.htm, .rst, .svg, "
    ".txt, .docx, .pptx, .xlsx/.xls/.ods, any of them gzipped (.gz), other files whose content is text, "
    f"image files ({'/'.join(sorted(IMAGE_SUFFIXES))}) or http(s) image URLs"
)


def read_file(path: Path, options: SourceOptions, *, in_folder: bool) -> Iterator[Pending]:
    """Items and errors from one local file, read by the source its type calls for. Each item records the file's
    content hash (a manifest row: its image's); its document (``ref_doc_id``) is the file (a row: its image).
    Pages and pictures read with OCR come ``Later`` (``later.in_order`` puts them in their place)."""
    suffix = real_suffix(path)
    if suffix in IMAGE_SUFFIXES and not is_gzip(path):
        return image_with_sidecar(path, options)
    if suffix in _READERS:
        return with_content_hash(_READERS[suffix](path, options), path)
    if suffix in MANIFEST_SUFFIXES:
        if suffix == ".csv" and not manifest_columns(path, options):
            return with_content_hash(iter_table(path, options), path)
        return iter_manifest(path, options)
    if sniff_text(path, options):
        return with_content_hash(iter_plain(path, options), path)
    what = type_of(path)
    if in_folder:
        return passed_over(path, f"no source reads {what} and its content is not text")
    reason = f"no source reads {what} and its content is not text; supported: {SUPPORTED}"
    return iter([SourceError(source=str(path), reason=reason, kind=Kind.UNSUPPORTED)])


def type_of(path: Path) -> str:
    """A file's type as a summary counts it: ``.zip files``, ``.png.gz files``, ``files without a suffix``."""
    suffix = "".join(path.suffixes[-2:]) if is_gzip(path) else path.suffix
    return f"{suffix.lower()} files" if suffix else "files without a suffix"


def passed_over(path: Path, why: str) -> Iterator[SourceResult]:
    yield SourceError(source=str(path), reason=f"passed over: {why}", kind=Kind.PASSED_OVER, severity=Severity.WARNING)
