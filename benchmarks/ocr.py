"""OCR: accuracy and speed on pages rendered from a real PDF with a known text layer, and what OCR costs a folder.

1. Accuracy: pages of a Debian PDF rendered at 150 dpi, read back with RapidOCR; word recall is the share of the
   text layer's words (lower case, letters and digits) that OCR found, counted with multiplicity.
2. Speed: OCR pages per second on those renderings.
3. A mixed folder (the text-layer PDF, a scanned copy of its first pages, Markdown): reading its sources with
   ``ocr="auto"`` against ``ocr="off"`` side by side, so OCR's share of the reading time shows; and the text-layer PDF
   alone with ``auto`` against ``off``: a PDF that needs no OCR goes at the same rate.

    python -m benchmarks.ocr [--pdf /usr/share/doc/libtasn1-doc/libtasn1.pdf] [--pages 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import pypdfium2 as pdfium

from benchmarks.common import cpu_name
from connectors.sources import open_sources
from connectors.sources.ocr import read_pixels

DEFAULT_PDF = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z0-9]+", text.lower()))


def accuracy(pdf_path: Path, pages: int) -> tuple[float, float, list]:
    """Word recall over ``pages`` pages at 150 dpi, OCR pages per second, and the renderings."""
    pdf = pdfium.PdfDocument(str(pdf_path))
    found = expected = 0
    seconds = 0.0
    pictures = []
    for index in range(min(pages, len(pdf))):
        page = pdf[index]
        truth = words(page.get_textpage().get_text_range())
        picture = page.render(scale=150 / 72).to_pil().convert("RGB")
        pictures.append(picture)
        start = time.perf_counter()
        read = words(read_pixels(picture, 10**9))
        seconds += time.perf_counter() - start
        found += sum((truth & read).values())
        expected += sum(truth.values())
        print(f"page {index + 1}: recall {sum((truth & read).values()) / max(1, sum(truth.values())):.3f}")
    pdf.close()
    return found / max(1, expected), len(pictures) / seconds, pictures


def scanned(path: Path, pictures: list) -> None:
    pdf = pdfium.PdfDocument.new()
    for picture in pictures:
        width, height = picture.width * 72 / 150, picture.height * 72 / 150
        page = pdf.new_page(width, height)
        image = pdfium.PdfImage.new(pdf)
        image.set_bitmap(pdfium.PdfBitmap.from_pil(picture))
        image.set_matrix(pdfium.PdfMatrix().scale(width, height))
        page.insert_obj(image)
        page.gen_content()
    pdf.save(str(path))
    pdf.close()


def read_seconds(paths: list[Path], cache: Path, ocr: str) -> float:
    shutil.rmtree(cache, ignore_errors=True)  # pages rendered afresh each time
    start = time.perf_counter()
    for _ in open_sources(paths, cache_dir=cache, ocr=ocr, decode_check=False):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--pages", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    recall, pages_per_second, pictures = accuracy(args.pdf, args.pages)
    print(f"word recall at 150 dpi over {len(pictures)} pages of {args.pdf.name}: {recall:.3f}")
    print(f"OCR: {pages_per_second:.3f} pages/s ({1 / pages_per_second:.1f} s a page)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mixed"
        folder.mkdir()
        shutil.copy(args.pdf, folder / args.pdf.name)
        scanned(folder / "scan.pdf", pictures)
        for n in range(20):
            (folder / f"note{n}.md").write_text(f"# Note {n}\n\n" + "Words of a note. " * 200)
        cache = Path(tmp) / "cache"
        off, auto = read_seconds([folder], cache, "off"), read_seconds([folder], cache, "auto")
        print(f"mixed folder, sources read: off {off:.1f} s, auto {auto:.1f} s: OCR {100 * (auto - off) / auto:.0f}%")
        text_off = read_seconds([args.pdf], cache, "off")
        text_auto = read_seconds([args.pdf], cache, "auto")
        print(f"text-layer PDF alone: off {text_off:.2f} s, auto {text_auto:.2f} s (ratio {text_auto / text_off:.2f})")


if __name__ == "__main__":
    main()
