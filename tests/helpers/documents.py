"""Small documents built at test time: pictures with PIL, DOCX, PPTX and XLSX with their libraries, PDFs with PDFium
(text, figures, scans) or as raw bytes (an encrypted one)."""

from __future__ import annotations

import ctypes
import io
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    """A plain picture of one colour, as JPEG bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    """A plain picture of one colour, as PNG bytes."""
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


def add_text(pdf: pdfium.PdfDocument, page: pdfium.PdfPage, text: str, x: float, y: float, size: float = 10.0) -> None:
    """Write one line of ``text`` on ``page`` in Helvetica, its baseline starting at (x, y)."""
    obj = pdfium_c.FPDFPageObj_NewTextObj(pdf, b"Helvetica", size)
    wide = ctypes.create_string_buffer((text + "\0").encode("utf-16-le"))
    pdfium_c.FPDFText_SetText(obj, ctypes.cast(wide, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
    pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, y)
    pdfium_c.FPDFPage_InsertObject(page, obj)


def _save(pdf: pdfium.PdfDocument, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.save(str(path))
    pdf.close()
    return path


def make_text_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF whose pages hold these lines of text, top down (a page of no lines is blank)."""
    pdf = pdfium.PdfDocument.new()
    for lines in pages:
        page = pdf.new_page(400, 600)
        for row, line in enumerate(lines):
            add_text(pdf, page, line, 20, 570 - 14 * row)
        page.gen_content()
    return _save(pdf, path)


def make_pdf(path: Path, figure: bytes) -> Path:
    """Two pages: one with a title, a JPEG figure and its caption, and a tiny icon; one with text only."""
    pdf = pdfium.PdfDocument.new()
    page = pdf.new_page(300, 400)
    add_text(pdf, page, "Chapter title far above", 20, 380, size=12.0)
    add_text(pdf, page, "Figure 1: a red rectangle", 20, 180, size=12.0)
    for data, (w, h, x, y) in ((figure, (128, 96, 20, 200)), (jpeg((0, 0, 0), (8, 8)), (8, 8, 250, 20))):
        image = pdfium.PdfImage.new(pdf)
        image.load_jpeg(io.BytesIO(data), inline=True)
        image.set_matrix(pdfium.PdfMatrix().scale(w, h).translate(x, y))
        page.insert_obj(image)
    page.gen_content()
    second = pdf.new_page(300, 400)
    add_text(pdf, second, "Second page text", 20, 300, size=12.0)
    second.gen_content()
    return _save(pdf, path)


def encrypted_pdf(path: Path) -> Path:
    """A minimal PDF whose trailer names a Standard security handler, so it needs a password."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [<%s> <%s>] >>\n" % (
        len(objects) + 1,
        b"00" * 16,
        b"00" * 16,
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def text_picture(words: str) -> Image.Image:
    """``words`` typeset in a small PDF page and rendered to pixels at 150 dpi: a scan of printed text."""
    pdf = pdfium.PdfDocument.new()
    page = pdf.new_page(260, 40)
    add_text(pdf, page, words, 10, 14, size=16.0)
    page.gen_content()
    picture = page.render(scale=150 / 72).to_pil().convert("RGB")
    pdf.close()
    return picture


def scanned_pdf(path: Path, pictures: list[Image.Image]) -> Path:
    """A PDF whose pages are only these pictures, with no text layer: what a scanner writes."""
    pdf = pdfium.PdfDocument.new()
    for picture in pictures:
        width, height = picture.width * 72 / 150, picture.height * 72 / 150
        page = pdf.new_page(width, height)
        image = pdfium.PdfImage.new(pdf)
        image.set_bitmap(pdfium.PdfBitmap.from_pil(picture))
        image.set_matrix(pdfium.PdfMatrix().scale(width, height))
        page.insert_obj(image)
        page.gen_content()
    return _save(pdf, path)
