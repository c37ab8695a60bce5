"""A document corpus for benchmarks: a PDF of text pages, Markdown with sections, plain text."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

_WORDS = (
    "signal depot carriage bridge timetable platform junction siding brake coupling driver guard freight "
    "passenger locomotive gauge sleeper ballast viaduct tunnel crossing lever interlocking shunting"
).split()


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(_WORDS, size=int(rng.integers(8, 20)))).capitalize() + "." for _ in range(n)]


def make_documents(folder: Path, pages: int, text_bytes: int) -> Path:
    """``folder`` with a ``pages``-page PDF of text and about ``text_bytes`` of Markdown and TXT, half each."""
    folder.mkdir(parents=True, exist_ok=True)
    _pdf(folder / "manual.pdf", pages)
    markdown, text, section = [], [], 0
    while sum(map(len, markdown)) < text_bytes / 2:
        section += 1
        markdown.append(f"## Section {section}\n\n" + " ".join(sentences(12, section)) + "\n\n")
    while sum(map(len, text)) < text_bytes / 2:
        text.append(" ".join(sentences(10, 10_000 + len(text))) + "\n\n")
    (folder / "guide.md").write_text("# Guide\n\n" + "".join(markdown))
    (folder / "notes.txt").write_text("".join(text))
    return folder


def _pdf(path: Path, pages: int) -> None:
    pdf = pdfium.PdfDocument.new()
    for number in range(pages):
        page = pdf.new_page(595, 842)
        for row, line in enumerate(sentences(40, number)):
            obj = pdfium_c.FPDFPageObj_NewTextObj(pdf, b"Helvetica", 9.0)
            wide = ctypes.create_string_buffer((line + "\0").encode("utf-16-le"))
            pdfium_c.FPDFText_SetText(obj, ctypes.cast(wide, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
            pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 30, 810 - 19 * row)
            pdfium_c.FPDFPage_InsertObject(page, obj)
        page.gen_content()
    pdf.save(str(path))
    pdf.close()
