"""OCR: accuracy and speed on pages rendered from a real PDF with a known text layer, and what OCR costs a folder.

1. Accuracy: pages of a Debian PDF rendered at 150 dpi, read back with RapidOCR; word recall is the share of the
   text layer's words (lower case, letters and digits) that OCR found, counted with multiplicity.
2. Speed: OCR pages per second on those renderings, one at a time on every core (the serial path), and a scanned
   copy of them read as an ingest reads it, in 1 and 2 lent preprocessing workers (``connectors.sources.later``).
3. A mixed folder (the PDF's first pages with their text layer, a scanned copy of the pages of 1., Markdown):
   ingested whole (full-size Visualized-BGE, random weights, Milvus Lite) with ``ocr="off"`` and ``"auto"`` side by
   side, so OCR's share of the ingest time shows; and the text-layer PDF's sources read with ``auto`` against
   ``off``: a PDF that needs no OCR goes at the same rate.

    python -m benchmarks.ocr [--pdf /usr/share/doc/libtasn1-doc/libtasn1.pdf] [--pages 4] [--text-pages 6]
        [--notes 20] [--ingest-workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pypdfium2 as pdfium

from benchmarks.common import cpu_name
from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import SourceOptions, iter_pdf, open_sources
from connectors.sources.later import lent_workers
from connectors.sources.ocr import read_pixels
from rag.ingest import ingest
from tests.helpers.documents import scanned_pdf

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


def read_seconds(paths: list[Path], cache: Path, ocr: str) -> float:
    shutil.rmtree(cache, ignore_errors=True)  # pages rendered afresh each time
    start = time.perf_counter()
    for _ in open_sources(paths, cache_dir=cache, ocr=ocr, decode_check=False):
        pass
    return time.perf_counter() - start


def scan_seconds(scan: Path, cache: Path, workers: int) -> float:
    """Seconds to read a scanned PDF's sources (rendering and OCR) in a reader thread lent ``workers`` threads, as
    an ingest run lends its preprocessing workers; 0: none lent, the serial path."""
    shutil.rmtree(cache, ignore_errors=True)
    done: list[float] = []
    options = SourceOptions(cache_dir=cache, pdf_figures=False)

    def read() -> None:
        start = time.perf_counter()
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="ocr") as pool:
            if workers:
                with lent_workers(pool.submit, workers):
                    texts = [r for r in iter_pdf(scan, options) if getattr(r, "text", "")]
            else:
                texts = [r for r in iter_pdf(scan, options) if getattr(r, "text", "")]
        assert texts, "OCR read nothing"
        done.append(time.perf_counter() - start)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    return done[0]


def ingest_seconds(folder: Path, tmp: Path, ocr: str, workers: int) -> tuple[float, int]:
    """A whole ingest of ``folder`` into a new Lite store: seconds (model loading left out) and items added."""
    from benchmarks.common import load_full_size

    encoder, model_dir = load_full_size("base", workers=workers)
    cache = tmp / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    db = tmp / f"db-{ocr}-{workers}" / "milvus.db"  # a store of its own (a Lite server outlives its last user a while)
    try:
        with MilvusStore.open(db, "bench", encoder_info=EncoderInfo.of(encoder)) as store:
            start = time.perf_counter()
            sources = open_sources([folder], cache_dir=cache, ocr=ocr, text_window=encoder.text_window)
            report = ingest(sources, encoder, store)
            return time.perf_counter() - start, report.added
    finally:
        model_dir.cleanup()


def first_pages(source: Path, target: Path, pages: int) -> None:
    pdf, cut = pdfium.PdfDocument(str(source)), pdfium.PdfDocument.new()
    cut.import_pages(pdf, list(range(min(pages, len(pdf)))))
    cut.save(str(target))
    cut.close()
    pdf.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--pages", type=int, default=4, help="pages OCR reads (accuracy, speed, the scanned copy)")
    parser.add_argument("--text-pages", type=int, default=6, help="pages of the text-layer PDF in the mixed folder")
    parser.add_argument("--notes", type=int, default=20, help="Markdown files in the mixed folder")
    parser.add_argument("--ingest-workers", type=int, nargs="+", default=[1, 2], help="workers of the OCR ingests")
    args = parser.parse_args()
    load = lambda: f"load {os.getloadavg()[0]:.1f}"  # noqa: E731
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; {load()}")
    recall, pages_per_second, pictures = accuracy(args.pdf, args.pages)
    print(f"word recall at 150 dpi over {len(pictures)} pages of {args.pdf.name}: {recall:.3f}")
    print(f"OCR alone: {pages_per_second:.3f} pages/s ({1 / pages_per_second:.1f} s a page); {load()}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "mixed"
        folder.mkdir()
        scanned_pdf(folder / "scan.pdf", pictures)
        cache = tmp / "cache"
        for workers in (0, 1, 2):
            seconds = scan_seconds(folder / "scan.pdf", cache, workers)
            what = f"{workers} lent worker{'s' * (workers > 1)}" if workers else "serial (no workers lent)"
            print(f"scanned PDF, {len(pictures)} pages, {what}: {len(pictures) / seconds:.3f} pages/s; {load()}")
        first_pages(args.pdf, folder / args.pdf.name, args.text_pages)
        for n in range(args.notes):
            (folder / f"note{n}.md").write_text(f"# Note {n}\n\n" + "Words of a note. " * 200)
        runs = {}
        ingest_seconds(folder, tmp / "warm-up", "off", 1)  # first-run costs (kernels, the Lite server) left out
        for ocr, workers in [("off", 1), *(("auto", w) for w in args.ingest_workers)]:
            runs[ocr, workers] = ingest_seconds(folder, tmp, ocr, workers)
            seconds, added = runs[ocr, workers]
            print(f"mixed folder ingest, ocr={ocr}, {workers} worker(s): {seconds:.1f} s, {added} items; {load()}")
        off = runs["off", 1][0]
        for workers in args.ingest_workers:
            auto = runs["auto", workers][0]
            print(f"OCR's share of the mixed folder's ingest, {workers} worker(s): {100 * (auto - off) / auto:.0f}%")
        text = args.pdf  # the whole PDF: its first pages alone read too fast to compare
        for _ in range(2):
            text_off, text_auto = read_seconds([text], cache, "off"), read_seconds([text], cache, "auto")
            print(
                f"text-layer PDF alone, sources read: off {text_off:.2f} s, auto {text_auto:.2f} s "
                f"(ratio {text_auto / text_off:.2f}); {load()}"
            )


if __name__ == "__main__":
    main()
