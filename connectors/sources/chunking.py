"""Document text as chunks that fit the encoder's window, and the anchors that name them.

Text is split with LlamaIndex's ``SentenceSplitter`` (paragraphs, then sentences, then words), its tokens counted
with the encoder's own tokenizer (``SourceOptions.text_window``), so every chunk plus the special tokens fits the
window and consecutive chunks share ``chunk_overlap`` tokens. Every sentence of the text lies in some chunk. A
document gives at most ``max_chunks_per_document`` chunks; what lies past that is counted and reported once.
Readers split a document into sections first (a heading and its text, a page, a slide), so chunks never straddle
two sections.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import SourceResult, make_item
from .options import SourceOptions

_LIGATURES: dict[str, str | int | None] = {
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "st",
    "\ufb06": "st",
}
_HYPHENATED = re.compile(r"(\w)[\u00ad\ufffe\u2010-]\n(\w)")
_SOFT_HYPHENS = re.compile(r"(?<=\w)[\u00ad\ufffe\u0002](?=\w)|[\u00ad\ufffe]")
_LIGATURE_TABLE = str.maketrans(_LIGATURES)


def clean_extracted(text: str) -> str:
    """Text extracted from a PDF or an office file without its artefacts: ligatures spelled out, words broken at
    line ends joined, soft hyphens (U+00AD, and the U+FFFE PDFium leaves for them) dropped, line ends unified."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = text.translate(_LIGATURE_TABLE)
    text = _HYPHENATED.sub(r"\1\2", text)
    return _SOFT_HYPHENS.sub("", text)


def slug(text: str) -> str:
    """A heading as GitHub anchors it: lower case; letters, marks, digits, ``_``, ``-`` and spaces kept, every
    other character dropped; each space a hyphen (``"Install & run"`` is ``install--run``)."""
    kept = "".join(c for c in text.strip().lower() if c in " -" or unicodedata.category(c)[0] in "LMN" or _connects(c))
    return kept.replace(" ", "-")


def _connects(c: str) -> bool:
    return unicodedata.category(c) == "Pc"  # "_" and its kin


class Slugger:
    """GitHub's slugs for one document's headings: a repeated one gains ``-1``, ``-2``, … (never a slug in use)."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def slug(self, heading: str) -> str:
        base = slug(heading)
        wanted, number = base, 0
        while wanted in self._taken:
            number += 1
            wanted = f"{base}-{number}"
        self._taken.add(wanted)
        return wanted


class Chunker:
    """One document's chunking: the splitter, its anchors (unique within the document) and the chunk cap."""

    def __init__(self, options: SourceOptions) -> None:
        from llama_index.core.node_parser import SentenceSplitter

        window = options.window
        size = window.text_tokens
        self._splitter = SentenceSplitter(
            chunk_size=size, chunk_overlap=min(options.chunk_overlap, size // 2), tokenizer=window.tokens
        )
        self._options = options
        self._room = options.max_chunks_per_document
        self._anchors: set[str] = set()
        self._numbers: dict[str, int] = {}  # chunks so far under each anchor
        self.left_out_chars = 0  # text past the cap

    def split(self, text: str) -> list[str]:
        """The text's chunks, as many as the cap still allows."""
        text = text.strip()
        if not text:
            return []
        if self._room <= 0:
            self.left_out_chars += len(text)
            return []
        chunks = [c for c in self._splitter.split_text(text) if c.strip()]
        kept, extra = chunks[: self._room], chunks[self._room :]
        self._room -= len(kept)
        self.left_out_chars += sum(len(c) for c in extra)
        return kept

    @property
    def full(self) -> bool:
        return self._room <= 0

    def taken(self, anchor: str) -> bool:
        """Whether the document has an item anchored ``anchor`` already."""
        return anchor in self._anchors

    def anchor(self, wanted: str) -> str:
        """``wanted``, or ``wanted-N`` when the document used it already."""
        anchor, number = wanted, 1
        while anchor in self._anchors:
            number += 1
            anchor = f"{wanted}-{number}"
        self._anchors.add(anchor)
        return anchor

    def next_anchor(self, anchor: str, style: str = "first") -> tuple[str, int]:
        """The anchor of the next chunk under ``anchor`` (see :meth:`items`), and its number."""
        number = self._numbers[anchor] = self._numbers.get(anchor, 0) + 1
        if style == "first" and number == 1:
            return self.anchor(anchor), number
        return self.anchor(f"{anchor}&chunk={number}" if anchor else f"chunk={number}"), number

    def items(
        self,
        text: str,
        *,
        source: str,
        where: str,
        anchor: str,
        metadata: dict[str, Any],
        style: str = "first",
        ref_doc_id: str = "",
    ) -> Iterator[SourceResult]:
        """Text-only items of one section: anchors ``anchor``, ``anchor&chunk=2``, … (``style="first"``: a heading,
        a slide; an empty anchor gives the document's top, then ``chunk=2``, …) or ``anchor&chunk=1``,
        ``anchor&chunk=2``, … (``style="chunk"``). Numbers go on where the last call under the same anchor
        stopped, so sections that share an anchor (HTML sections under one id) still name their chunks apart."""
        for chunk in self.split(text):
            name, number = self.next_anchor(anchor, style)
            yield from make_item(
                source=source,
                where=f"{where}#{name}",
                options=self._options,
                text=chunk,
                anchor=name,
                metadata={**metadata, "chunk": number},
                chunked=True,
                ref_doc_id=ref_doc_id,
            )

    def report(self, where: str) -> Iterator[SourceError]:
        """One warning when the cap left text out."""
        if self.left_out_chars:
            cap = self._options.max_chunks_per_document
            reason = f"over the {cap}-chunk cap per document: {self.left_out_chars:,} characters of text left out"
            yield SourceError(source=where, reason=reason, kind=Kind.TOO_MANY_CHUNKS, severity=Severity.WARNING)
