"""Sources: read a corpus lazily as knowledge items, and report bad input as ``SourceError`` values.

A folder is read whole, each file by the source its type calls for (``files``); documents become text chunks
sized to the encoder's window (``chunking``) beside their pictures and pages.

Every source is a generator of ``KnowledgeItem | SourceError``: one bad file never stops a run,
and nothing bad is silent. Item ids are content hashes (image bytes, text, source), so the same
content gets the same id on every run. Images are checked (format, integrity, size) but not
decoded for embedding; files that have to be made (PDF pages and figures, inline and downloaded
images) are written under ``SourceOptions.cache_dir`` so that every image is a local file.
"""

from ._common import BadInput, SourceResult, check_image, store_image, write_atomic
from .count import count_items
from .dispatch import missing_sources, open_source, open_sources, peek_items
from .documents import iter_html, iter_markdown
from .files import SUPPORTED_SUFFIXES
from .folder import iter_folder
from .llamaindex import iter_llama_nodes
from .manifest import iter_manifest
from .office import iter_docx, iter_pptx
from .options import SourceOptions
from .pdf import iter_pdf
from .text import iter_text
from .urls import iter_urls

__all__ = [
    "BadInput",
    "SUPPORTED_SUFFIXES",
    "SourceOptions",
    "SourceResult",
    "check_image",
    "count_items",
    "iter_docx",
    "iter_folder",
    "iter_html",
    "iter_llama_nodes",
    "iter_manifest",
    "iter_markdown",
    "iter_pdf",
    "iter_pptx",
    "iter_text",
    "iter_urls",
    "missing_sources",
    "open_source",
    "open_sources",
    "peek_items",
    "store_image",
    "write_atomic",
]
