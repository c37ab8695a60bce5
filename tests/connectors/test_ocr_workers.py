"""OCR in the workers a run lends the sources: off the reader's thread, pages at once, the serial path's results.

A fake engine stands in for RapidOCR (which takes seconds a page): it records the thread that calls it and reads
a page's width as its text, so that every page's text is its own.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from connectors.sources import BadInput, SourceOptions, iter_folder, iter_pdf
from connectors.sources import ocr as ocr_module
from connectors.sources.later import in_order, lent_workers
from connectors.sources.ocr import ocr_result
from rag.items import KnowledgeItem, Severity
from rag.items import SourceErrorKind as Kind
from tests.helpers.documents import make_text_pdf, png, scanned_pdf

from .test_sources import split, write

#: Widths of the scanned pages (pixels at 150 dpi); the fake finds nothing on a BLANK one and fails on a BROKEN one.
WIDTHS = (200, 260, 320, 380)
BLANK, BROKEN = 260, 320


class FakeEngine:
    """RapidOCR's call, answered from the picture's width; ``together`` makes each call wait for that many."""

    def __init__(self, *, together: int = 1, broken: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.threads: list[int] = []
        self.broken = broken
        self._meet = threading.Barrier(together, timeout=30) if together > 1 else None
        self._lock = threading.Lock()
        self._active = 0
        self.most_at_once = 0

    def load(self, threads: int) -> FakeEngine:
        self.threads.append(threads)
        return self

    def __call__(self, pixels: np.ndarray) -> Any:
        width = _rounded(pixels.shape[1])
        with self._lock:
            self.calls.append((threading.current_thread().name, width))
            self._active += 1
            self.most_at_once = max(self.most_at_once, self._active)
        try:
            if self._meet is not None:
                self._meet.wait()  # a serial reader never gets here twice at once: the barrier breaks
            if width == self.broken:
                raise RuntimeError("onnxruntime session fell over")
            return SimpleNamespace(txts=() if width == BLANK else (f"words of a page {width} wide", "second line"))
        finally:
            with self._lock:
                self._active -= 1


def _rounded(width: int) -> int:
    return min((*WIDTHS, 440, 500), key=lambda w: abs(w - width))


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    use(monkeypatch, fake)
    return fake


def use(monkeypatch: pytest.MonkeyPatch, fake: FakeEngine) -> None:
    monkeypatch.setattr(ocr_module, "new_engine", fake.load)
    monkeypatch.setattr(ocr_module, "_idle_engines", {})  # no engine kept by an earlier test
    monkeypatch.setattr("connectors.sources.pdf.ocr_installed", lambda: True)
    monkeypatch.setattr("connectors.sources.images.ocr_installed", lambda: True)


def scans(path: Path, widths: tuple[int, ...] = WIDTHS) -> Path:
    return scanned_pdf(path, [Image.new("RGB", (width, 120), (250, 250, 250)) for width in widths])


def mixed_folder(root: Path) -> Path:
    scans(root / "a-scan.pdf")
    make_text_pdf(root / "b-text.pdf", [["A page with a text layer long enough to need no OCR"]])
    write(root / "c-notes.md", "# Notes\n\nWords between the pictures.\n")
    write(root / "d-slide.png", png((240, 240, 240), (440, 120)))
    write(root / "d-slide.txt", "A slide")
    write(root / "e-shot.png", png((240, 240, 240), (500, 120)))
    return root


def options(tmp_path: Path, **fields: Any) -> SourceOptions:
    return SourceOptions(cache_dir=tmp_path / "cache", pdf_dpi=150, **fields)


def same(results: list[Any]) -> list[Any]:
    """Results as compared: all but the moment an item was made."""
    return [r.model_dump(exclude={"created_at"}) if isinstance(r, KnowledgeItem) else r for r in results]


def read_lending(results_of: Any, workers: int) -> list[Any]:
    """Read the sources in a thread of their own (the reader), lending them ``workers`` threads."""
    out: list[Any] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="lent") as pool:

        def read() -> None:
            with lent_workers(pool.submit, workers):
                out.extend(results_of())

        reader = threading.Thread(target=read, name="reader")
        reader.start()
        reader.join()
    return out


def test_pages_are_read_in_the_lent_workers_several_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine(together=2)  # two calls must be at work together, or they time out
    use(monkeypatch, fake)
    pdf = scans(tmp_path / "scan.pdf", (200, 380, 440, 500))
    items, problems = split(read_lending(lambda: iter_pdf(pdf, options(tmp_path)), workers=2))
    assert problems == []
    assert fake.most_at_once == 2
    assert {name for name, _ in fake.calls} <= {"lent_0", "lent_1"}  # never the reader's thread
    assert sorted(width for _, width in fake.calls) == [200, 380, 440, 500]
    pages = [i for i in items if "&" not in i.anchor]
    assert [(p.anchor, p.text.splitlines()[0], p.metadata["text_origin"]) for p in pages] == [
        (f"page={n}", f"words of a page {w} wide", "ocr") for n, w in enumerate((200, 380, 440, 500), start=1)
    ]
    cores = ocr_module._cores()
    assert set(fake.threads) == {max(1, cores // 2)}  # each engine on its share of the cores


def test_the_lent_workers_give_the_serial_paths_results_in_its_order(tmp_path: Path, engine: FakeEngine) -> None:
    root = mixed_folder(tmp_path / "docs")
    serial = list(iter_folder(root, options(tmp_path, ocr="all")))
    assert {name for name, _ in engine.calls} == {threading.current_thread().name}  # no workers lent: here
    engine.calls.clear()
    lent = read_lending(lambda: iter_folder(root, options(tmp_path, ocr="all")), workers=3)
    assert same(lent) == same(serial)
    assert len(engine.calls) == 6 and all(name.startswith("lent_") for name, _ in engine.calls)  # 4 pages, 2 pictures
    items, problems = split(lent)
    names = [i.name for i in items]
    assert names == sorted(names, key=lambda n: n.split("#")[0])  # file by file, as the folder is walked
    by_name = {i.name: i for i in items}
    assert by_name["e-shot.png"].text.startswith("words of a page 500 wide")
    assert by_name["e-shot.png"].metadata["text_origin"] == "ocr"
    assert by_name["d-slide.png"].text.startswith("A slide\n\nwords of a page 440 wide")
    assert by_name["d-slide.png"].metadata["text_origin"] == "caption+ocr"
    assert "text_origin" not in by_name["b-text.pdf#page=1"].metadata  # a text layer is not read again
    assert by_name["a-scan.pdf#page=1&chunk=1"].text == by_name["a-scan.pdf#page=1"].text  # chunked like any text


def test_a_page_ocr_fails_on_or_finds_nothing_on_is_still_its_picture_and_the_others_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeEngine(broken=BROKEN)
    use(monkeypatch, fake)
    pdf = scans(tmp_path / "scan.pdf")
    results = read_lending(lambda: iter_pdf(pdf, options(tmp_path, pdf_figures=False)), workers=2)
    items, problems = split(results)
    pages = {i.anchor: i for i in items if "&" not in i.anchor}
    assert list(pages) == ["page=1", "page=2", "page=3", "page=4"]
    assert all(p.image is not None for p in pages.values())
    assert pages["page=2"].text == "" and "text_origin" not in pages["page=2"].metadata  # OCR found nothing
    assert pages["page=3"].text == "" and "text_origin" not in pages["page=3"].metadata  # OCR failed
    assert pages["page=1"].text.startswith("words of a page 200 wide")
    assert pages["page=4"].text.startswith("words of a page 380 wide")
    [failed] = problems
    assert (failed.kind, failed.severity) == (Kind.OCR_FAILED, Severity.WARNING)
    assert failed.source.endswith("scan.pdf#page=3") and "onnxruntime session fell over" in failed.reason


def test_a_picture_over_the_pixel_guard_is_named_and_not_read() -> None:
    done: Future[str] = Future()
    done.set_exception(BadInput(Kind.IMAGE_TOO_LARGE, "30000x30000 image exceeds the 178956970-pixel limit"))
    text, [problem] = ocr_result(done, "/scans/huge.png")
    assert text == "" and problem.kind is Kind.IMAGE_TOO_LARGE and problem.source == "/scans/huge.png"


def test_a_reader_stopped_early_leaves_no_work_queued(tmp_path: Path, engine: FakeEngine) -> None:
    pdf = scans(tmp_path / "scan.pdf")
    first = read_lending(lambda: [next(iter(iter_pdf(pdf, options(tmp_path, pdf_figures=False))))], workers=1)
    assert [r.anchor for r in first if isinstance(r, KnowledgeItem)] == ["page=1"]
    assert len(engine.calls) <= 2  # page 1 and at most the one read ahead: the rest were cancelled


def test_results_with_nothing_to_wait_for_go_straight_through() -> None:
    seen: list[int] = []

    def results() -> Any:
        for n in range(3):
            seen.append(n)
            yield KnowledgeItem(id=f"i{n}", source="s", text=str(n))

    stream = in_order(results())
    assert next(stream).text == "0" and seen == [0]  # not read ahead of what was asked for
