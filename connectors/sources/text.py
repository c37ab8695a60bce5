"""Plain text files: chunks ``#chunk=1``, ``#chunk=2``, … read as a stream, so a file of any size costs little memory.

The file is read in blocks of about a megabyte, each cut at its last paragraph break (else line break, else space)
and chunked on its own (``chunking``). UTF-8 is expected; a file that is not is read as Latin-1 with a warning,
and one with NUL bytes near its start is refused as binary data. Reading stops at ``max_chunks_per_document``
with a warning saying how much was left out.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import SourceResult
from .chunking import Chunker
from .options import SourceOptions

TEXT_SUFFIXES = (".txt",)
_BLOCK = 1 << 20
_PROBE = 8192


def iter_text(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield a text file's chunks as text-only items, anchored ``chunk=N``."""
    options = options or SourceOptions()
    doc = Path(path).resolve()
    where = str(doc)
    try:
        f = doc.open("rb")
    except FileNotFoundError:
        yield SourceError(source=where, reason="file not found", kind=Kind.NOT_FOUND)
        return
    except OSError as e:
        yield SourceError(source=where, reason=f"cannot read: {e.strerror or e}", kind=Kind.UNREADABLE)
        return
    with f:
        head = f.read(_PROBE)
        if b"\x00" in head:
            yield SourceError(source=where, reason="binary data, not text (NUL bytes)", kind=Kind.NOT_TEXT)
            return
        if not head.strip():
            yield SourceError(source=where, reason="no text", kind=Kind.EMPTY_FILE, severity=Severity.WARNING)
            return
        f.seek(0)
        chunker = Chunker(options)
        for piece in _pieces(f, where):
            if isinstance(piece, SourceError):
                yield piece
                continue
            yield from chunker.items(
                piece, source=where, where=where, anchor="", metadata={"file_path": where}, style="chunk"
            )
            if chunker.full:
                chunker.left_out_chars += max(0, doc.stat().st_size - f.tell())  # bytes, near enough to characters
                break
        yield from chunker.report(where)


def _pieces(f: BinaryIO, where: str) -> Iterator[str | SourceError]:
    """The file's text in pieces of about ``_BLOCK`` bytes, each ending at a paragraph, line or word boundary."""
    encoding = "utf-8"
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    carry = ""
    first = True
    while block := f.read(_BLOCK):
        try:
            text = decoder.decode(block)
        except UnicodeDecodeError as e:
            reason = f"not valid UTF-8 ({e.reason}); read as Latin-1 from byte {f.tell() - len(block)} on"
            yield SourceError(source=where, reason=reason, kind=Kind.NOT_TEXT, severity=Severity.WARNING)
            decoder = codecs.getincrementaldecoder("latin-1")()
            text = decoder.decode(block)
        if first:
            text, first = text.removeprefix("\ufeff"), False
        text = carry + text
        cut = _boundary(text) if len(block) == _BLOCK else len(text)  # a short read is the end of the file
        carry, text = text[cut:], text[:cut]
        if text.strip():
            yield text
    carry += decoder.decode(b"", final=True)
    if carry.strip():
        yield carry


def _boundary(text: str) -> int:
    """Where to cut a block: after its last paragraph break, else line break, else space (else at its end)."""
    for separator in ("\n\n", "\n", " "):
        at = text.rfind(separator, len(text) // 2)
        if at > 0:
            return at + len(separator)
    return len(text)
