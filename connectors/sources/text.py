"""Plain text files, read as a stream so a file of any size costs little memory, anchored by the lines they hold.

Each chunk's anchor is an RFC 5147 fragment, ``#line=a,b``: the line positions around the lines it holds, 0-based as
the RFC counts (``line=0,12`` is the first twelve lines); its number within the file is ``chunk`` in its metadata.
Chunks of one long line share its fragment and add their number, ``#line=4,5&chunk=7``, which links drop.
The file is read in blocks of about a megabyte, each cut at its last paragraph break (else line break, else space)
and chunked on its own (``chunking``). ``.gz`` files are unpacked on the way (``compressed``).

``.txt`` files are expected in UTF-8; one that is not is read as Latin-1 with a warning, and one with NUL bytes near
its start is refused as binary data. A file of a type no other source reads (``LICENSE``, ``Makefile``,
``copyright``, ``changelog.Debian.gz``) is read the same way when it looks like text (``sniff_text``): no NUL
bytes, and valid UTF-8 or an encoding ``charset-normalizer`` is sure of; others are binary and passed over.
Reading stops at ``max_chunks_per_document`` with a warning saying how much was left out.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import BinaryIO

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, SourceResult, make_item
from .chunking import Chunker
from .compressed import cut_off, is_gzip, open_binary
from .options import SourceOptions

TEXT_SUFFIXES = (".txt",)
#: Text is read and chunked in pieces of about this many bytes: the sentence splitter holds a piece's chunks at once,
#: and nltk (3.10 on) gives its sentence regex 5 s per call, which a 1 MB piece can pass on a slow or busy machine.
_BLOCK = 1 << 16
_PROBE = 8192


def sniff_text(path: Path, options: SourceOptions) -> str | None:
    """The encoding a file of unknown type is text in, or None when it is binary (NUL bytes, no sure encoding)."""
    try:
        with open_binary(path, options) as f:
            head = f.read(_PROBE)
    except (OSError, BadInput):
        return None
    if not head.strip() or b"\x00" in head:
        return None
    encoding: str | None = "utf-8"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3 and e.reason == "unexpected end of data":  # the probe cut a character in two
            text = head[: e.start].decode("utf-8")
        else:
            from charset_normalizer import from_bytes

            best = from_bytes(head).best()
            if best is None or best.chaos > 0.1:
                return None
            text, encoding = str(best), best.encoding
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f\x1b")
    return encoding if controls <= len(text) // 100 else None


def iter_text(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield a text file's chunks as text-only items, anchored ``line=a,b``."""
    return _iter_text(Path(path), options or SourceOptions(), "utf-8")


def iter_plain(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """A file of unknown type read as text, in the encoding ``sniff_text`` found (the caller checked it is text)."""
    options = options or SourceOptions()
    return _iter_text(Path(path), options, sniff_text(Path(path), options) or "utf-8")


def _iter_text(path: Path, options: SourceOptions, encoding: str) -> Iterator[SourceResult]:
    doc = path.resolve()
    where = str(doc)
    try:
        f = open_binary(doc, options)
    except FileNotFoundError:
        yield SourceError(source=where, reason="file not found", kind=Kind.NOT_FOUND)
        return
    except OSError as e:
        yield SourceError(source=where, reason=f"cannot read: {e.strerror or e}", kind=Kind.UNREADABLE)
        return
    with f:
        try:
            yield from _chunks(f, doc, options, encoding)
        except BadInput as e:  # a corrupt .gz: the chunks before it are kept
            yield e.report(where)


def _chunks(f: BinaryIO, doc: Path, options: SourceOptions, encoding: str) -> Iterator[SourceResult]:
    where = str(doc)
    head = f.read(_PROBE)
    if b"\x00" in head:
        yield SourceError(source=where, reason="binary data, not text (NUL bytes)", kind=Kind.NOT_TEXT)
        return
    if not head.strip():
        yield SourceError(source=where, reason="no text", kind=Kind.EMPTY_FILE, severity=Severity.WARNING)
        return
    chunker = Chunker(options)
    line = 0  # line position at the start of the current piece
    number = 0
    blocks = chain([head + f.read(_BLOCK - len(head))], iter(lambda: f.read(_BLOCK), b""))
    for piece in _pieces(blocks, where, encoding):
        if isinstance(piece, SourceError):
            yield piece
            continue
        cursor = 0
        for chunk in chunker.split(piece):
            start = _find(piece, chunk, cursor)
            end = start + len(chunk)
            first, last = line + piece.count("\n", 0, start), line + piece.count("\n", 0, end)
            if not chunk.endswith("\n"):
                last += 1  # up to the position after the chunk's last line
            number += 1
            lines = f"line={first},{last}"  # chunks within one long line share it, and add their number
            anchor = chunker.anchor(f"{lines}&chunk={number}" if chunker.taken(lines) else lines)
            metadata = {"file_path": where, "chunk": number}
            yield from make_item(
                source=where, where=f"{where}#{anchor}", options=options, text=chunk, anchor=anchor,
                metadata=metadata, chunked=True,
            )  # fmt: skip
            cursor = max(start + 1, end - len(chunk) * 2 // 3)  # the next chunk repeats at most half of this one
        line += piece.count("\n")
        if chunker.full:
            chunker.left_out_chars += _left(f, doc)
            break
    yield from chunker.report(where)
    problem = cut_off(f, options)
    if problem:
        yield problem.report(where)


def _left(f: BinaryIO, doc: Path) -> int:
    """The bytes past the chunk cap (near enough to characters, for the warning); a ``.gz`` is read to its end,
    within its cap."""
    if not is_gzip(doc):
        return max(0, doc.stat().st_size - f.tell())
    left = 0
    try:
        while block := f.read(_BLOCK):
            left += len(block)
    except BadInput:
        pass  # a corrupt stream: counted up to there
    return left


def _find(text: str, chunk: str, cursor: int) -> int:
    """Where ``chunk`` starts in ``text``, at or after ``cursor`` (the splitter keeps text as it is; its start is
    looked up by a prefix should it ever have trimmed the rest)."""
    at = text.find(chunk, cursor)
    if at < 0:
        at = text.find(chunk[:64], cursor)
    return at if at >= 0 else cursor


def _pieces(blocks: Iterable[bytes], where: str, encoding: str) -> Iterator[str | SourceError]:
    """The text in pieces of about ``_BLOCK`` bytes (the size of each block but the last), each ending at a
    paragraph, line or word boundary."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    carry = ""
    first = True
    done = 0
    for block in blocks:
        try:
            text = decoder.decode(block)
        except UnicodeDecodeError as e:
            reason = f"not valid {encoding.upper()} ({e.reason}); read as Latin-1 from byte {done} on"
            yield SourceError(source=where, reason=reason, kind=Kind.NOT_TEXT, severity=Severity.WARNING)
            decoder = codecs.getincrementaldecoder("latin-1")()
            text = decoder.decode(block)
        done += len(block)
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
