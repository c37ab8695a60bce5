"""Small documents built at test time: DOCX and PPTX with python-docx and python-pptx, PDFs with PDFium."""

from __future__ import annotations

import ctypes
import io
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image


def png(color: tuple[int, int, int], size: tuple[int, int] = (96, 96)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_docx(path: Path, picture: bytes | None = None) -> Path:
    """A title, two headed sections (one with a table), and a picture in the second section."""
    import docx

    document = docx.Document()
    document.add_heading("Field manual", 0)
    document.add_paragraph("This manual covers the whole fleet.")
    document.add_heading("Tracking faults", 1)
    document.add_paragraph("Faults are tracked in the weekly log by the duty engineer.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "fault", "owner"
    table.cell(1, 0).text, table.cell(1, 1).text = "brake squeal", "depot"
    document.add_heading("Cleaning", 1)
    paragraph = document.add_paragraph("Wash the carriage with warm water. ")
    if picture is not None:
        from docx.shared import Inches

        paragraph.add_run().add_picture(io.BytesIO(picture), width=Inches(1))
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))
    return path


def make_pptx(path: Path, picture: bytes | None = None) -> Path:
    """Two slides with titles and bullet text; the second holds a picture and speaker notes."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    for title, body in (("Quarterly plan", "Ship the signal upgrade"), ("Depot map", "Three sidings and a turntable")):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    last = deck.slides[1]
    last.notes_slide.notes_text_frame.text = "Mention the new crane."
    if picture is not None:
        last.shapes.add_picture(io.BytesIO(picture), Inches(1), Inches(1))
    path.parent.mkdir(parents=True, exist_ok=True)
    deck.save(str(path))
    return path


def add_text(pdf: pdfium.PdfDocument, page: pdfium.PdfPage, text: str, x: float, y: float, size: float = 10.0) -> None:
    """Write one line of ``text`` on ``page`` in Helvetica, its baseline starting at (x, y)."""
    obj = pdfium_c.FPDFPageObj_NewTextObj(pdf, b"Helvetica", size)
    wide = ctypes.create_string_buffer((text + "\0").encode("utf-16-le"))
    pdfium_c.FPDFText_SetText(obj, ctypes.cast(wide, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
    pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, y)
    pdfium_c.FPDFPage_InsertObject(page, obj)


def make_text_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF whose pages hold these lines of text, top down."""
    pdf = pdfium.PdfDocument.new()
    for lines in pages:
        page = pdf.new_page(400, 600)
        for row, line in enumerate(lines):
            add_text(pdf, page, line, 20, 570 - 14 * row)
        page.gen_content()
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.save(str(path))
    pdf.close()
    return path


def make_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """A workbook with these sheets, each a list of rows (its first row the header)."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(str(path))
    return path
