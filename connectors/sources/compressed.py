"""Files as readers see their bytes: gzip-compressed ones (``README.md.gz``) unpacked on the fly, under a cap.

A ``.gz`` file is read as the type its name has without ``.gz`` (``notes.txt.gz`` as text, ``changelog.Debian.gz``
as whatever its content is); its items keep the file's real name. What it unpacks to is capped at
``max_document_bytes``, the limit for any document read whole, so a gzip bomb stops there with a clear error
(``cut_off``; a reader that streams keeps what came before the cut). A corrupt or truncated stream raises
``BadInput`` from ``read``.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import BinaryIO

from rag.items import SourceErrorKind as Kind

from ._common import BadInput
from .options import SourceOptions

GZIP_SUFFIX = ".gz"


def is_gzip(path: Path) -> bool:
    return path.suffix.lower() == GZIP_SUFFIX


def real_suffix(path: Path) -> str:
    """The suffix that says how to read the file: ``.md`` for ``README.md.gz``, lower case."""
    return (path.with_suffix("") if is_gzip(path) else path).suffix.lower()


class _CappedGzip(io.RawIOBase):
    """A gzip stream that ends at ``cap`` unpacked bytes (``cut`` then says there was more) and raises
    ``BadInput`` on a corrupt stream."""

    def __init__(self, path: Path, cap: int) -> None:
        super().__init__()
        self._file = gzip.open(path, "rb")  # noqa: SIM115 -- closed by close()
        self._cap = cap
        self._read = 0
        self.cut = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        room = self._cap - self._read
        try:
            if room <= 0:
                self.cut = self.cut or bool(self._file.read(1))
                return 0
            count = self._file.readinto(memoryview(buffer)[:room])
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise BadInput(Kind.UNREADABLE_DOCUMENT, f"corrupt or truncated gzip file: {e}") from None
        self._read += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def cut_off(f: BinaryIO, options: SourceOptions) -> BadInput | None:
    """The error for a stream ``open_binary`` ended at the size limit (a gzip bomb), else None."""
    if not getattr(getattr(f, "raw", None), "cut", False):
        return None
    cap = options.max_document_bytes
    return BadInput(
        Kind.UNREADABLE_DOCUMENT, f"unpacks past the {cap:,}-byte limit for a document (a gzip bomb?): cut there"
    )


def open_binary(path: Path, options: SourceOptions) -> BinaryIO:
    """The file's bytes as a stream, unpacked when it is a ``.gz``; ``OSError`` when it cannot be opened."""
    if not is_gzip(path):
        return path.open("rb")
    path.stat()  # FileNotFoundError and friends now, as for a plain file
    return io.BufferedReader(_CappedGzip(path, options.max_document_bytes), buffer_size=1 << 16)


def read_bytes(path: Path, options: SourceOptions) -> bytes:
    """The whole file's bytes (unpacked), refused past ``max_document_bytes``."""
    cap = options.max_document_bytes
    try:
        size = path.stat().st_size
        if not is_gzip(path):
            if size > cap:
                raise BadInput(
                    Kind.UNREADABLE_DOCUMENT, f"{size:,} bytes, over the {cap:,}-byte limit for a document read whole"
                )
            return path.read_bytes()
        with open_binary(path, options) as f:
            data = f.read()
            problem = cut_off(f, options)
    except FileNotFoundError:
        raise BadInput(Kind.NOT_FOUND, "file not found") from None
    except OSError as e:
        raise BadInput(Kind.UNREADABLE, f"cannot read: {e.strerror or e}") from None
    if problem:
        raise problem
    return data
