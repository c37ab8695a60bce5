"""Write the binary documents of this corpus: a Word handbook, a PowerPoint review and a PDF inspection report.

    python examples/documents/write_binaries.py

python-docx and python-pptx write the office files (with a picture each from ``examples/corpus``); PDFium
writes a two-page PDF of text. The files are committed; run this again after changing the text here.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import docx
import pptx
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from docx.shared import Inches
from pptx.util import Inches as SlideInches

HERE = Path(__file__).resolve().parent
PICTURES = HERE.parent / "corpus"


def handbook(path: Path) -> None:
    document = docx.Document()
    document.add_heading("Depot handbook", 0)
    document.add_paragraph("Everything a new volunteer needs to know before a first shift at the depot.")
    document.add_heading("Tracking faults", 1)
    document.add_paragraph(
        "Every fault goes into the red fault book by the shed door, with the carriage number and the date. "
        "The duty engineer reviews the book each Saturday morning."
    )
    table = document.add_table(rows=3, cols=2)
    for row, (fault, owner) in enumerate(
        (("fault", "who fixes it"), ("brake squeal", "carriage team"), ("door lock", "locksmith"))
    ):
        table.cell(row, 0).text, table.cell(row, 1).text = fault, owner
    document.add_heading("Carriage cleaning", 1)
    paragraph = document.add_paragraph("Carriages are washed by hand with warm water, never with a pressure washer. ")
    paragraph.add_run().add_picture(str(PICTURES / "carriage-day.jpg"), width=Inches(2))
    document.save(str(path))


def review(path: Path) -> None:
    deck = pptx.Presentation()
    slides = (
        ("Quarterly review", "Passenger numbers rose by a fifth over the summer timetable."),
        ("Bridge repainting", "The suspension bridge viewpoint closes in March while the railings are repainted."),
    )
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    bridge = deck.slides[1]
    bridge.shapes.add_picture(
        str(PICTURES / "mid-hudson-bridge.jpg"), SlideInches(5), SlideInches(4.5), width=SlideInches(3)
    )
    bridge.notes_slide.notes_text_frame.text = "Ask the council about the road closure dates."
    deck.save(str(path))


def inspection(path: Path) -> None:
    pages = [
        [
            "Bridge inspection report",
            "",
            "The annual inspection of the river viaduct found the piers sound.",
            "Scour around the second pier is within limits; it will be measured again next year.",
        ],
        [
            "Recommendations",
            "",
            "Replace the drainage grating on the east parapet before the winter.",
            "Clear the vegetation growing from the north abutment.",
        ],
    ]
    pdf = pdfium.PdfDocument.new()
    for lines in pages:
        page = pdf.new_page(595, 842)
        for row, line in enumerate(lines):
            if not line:
                continue
            obj = pdfium_c.FPDFPageObj_NewTextObj(pdf, b"Helvetica", 11.0)
            wide = ctypes.create_string_buffer((line + "\0").encode("utf-16-le"))
            pdfium_c.FPDFText_SetText(obj, ctypes.cast(wide, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
            pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 50, 790 - 18 * row)
            pdfium_c.FPDFPage_InsertObject(page, obj)
        page.gen_content()
    pdf.save(str(path))
    pdf.close()


if __name__ == "__main__":
    handbook(HERE / "depot-handbook.docx")
    review(HERE / "quarterly-review.pptx")
    inspection(HERE / "bridge-inspection.pdf")
    print(f"wrote depot-handbook.docx, quarterly-review.pptx and bridge-inspection.pdf in {HERE}")
