"""Documents through the whole ingest: idempotent, a changed document replaces exactly its old items, a killed run
resumes to the exact set, and names work as filters in the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest
from tests.helpers.documents import make_docx, make_text_pdf, png
from tests.ingest.test_cli_ingest import run
from tests.ingest.test_pipeline import kill_when_added

STOPS = " ".join(f"Stop {i} is on the {['north', 'east', 'west'][i % 3]} line." for i in range(300))


def _options(encoder, tmp_path: Path) -> dict:
    # OCR off: the test pages' few words would send them through real OCR, seconds a page (test_ocr*.py test OCR)
    return {
        "cache_dir": tmp_path / "cache",
        "text_window": encoder.text_window.capped(64),
        "chunk_overlap": 8,
        "ocr": "off",
    }


def _store(tmp_path: Path, encoder) -> MilvusStore:
    return MilvusStore.open(tmp_path / "db" / "milvus.db", "docs", encoder_info=EncoderInfo.of(encoder))


@pytest.mark.slow
def test_documents_reingest_idempotently_and_replace_exactly_their_old_items(tiny_base, tmp_path):
    docs = tmp_path / "docs"
    (docs / "notes.txt").parent.mkdir(parents=True)
    (docs / "notes.txt").write_text(STOPS)
    make_text_pdf(docs / "manual.pdf", [["page one"], ["page two"], ["page three"]])
    (docs / "guide.md").write_text("# Guide\n\nRead me.\n\n## Install\n\nRun it.\n")
    options = _options(tiny_base, tmp_path)
    with _store(tmp_path, tiny_base) as store:
        first = ingest(open_sources([docs], **options), tiny_base, store)
        assert first.skipped == [] and first.added == store.count() > 30
        again = ingest(open_sources([docs], **options), tiny_base, store)
        assert (again.added, again.unchanged, again.replaced) == (0, first.added, 0)  # +0

        (docs / "notes.txt").write_text(" ".join(STOPS.split(". ")[:40]))  # a shorter version
        make_text_pdf(docs / "manual.pdf", [["page one"], ["page two, changed"]])  # one page lost
        changed = ingest(open_sources([docs], **options), tiny_base, store)
        with MilvusStore.open(tmp_path / "clean.db", "docs", encoder_info=EncoderInfo.of(tiny_base)) as fresh:
            ingest(open_sources([docs], **options), tiny_base, fresh)
            expected = {(h.item.name, h.item.text) for h in fresh.search(tiny_base.encode_text(["x"])[0], k=1000)}
        stored = {(h.item.name, h.item.text) for h in store.search(tiny_base.encode_text(["x"])[0], k=1000)}
        assert stored == expected  # no orphan chunk of the longer text, nothing of the lost page
        assert not any(name.startswith("manual.pdf#page=3") for name, _ in stored)
        assert store.count() == first.added + changed.added - changed.removed  # the report accounts for the count
        assert changed.replaced > 0 and changed.removed > 0  # changed chunks and pages, and the lost page's items


INTERRUPTIBLE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tests.conftest import load_tiny
    from connectors.milvus import EncoderInfo, MilvusStore
    from connectors.sources import open_sources
    from rag.ingest import ingest

    encoder = load_tiny("base")
    options = {"cache_dir": Path(sys.argv[3]), "text_window": encoder.text_window.capped(64), "chunk_overlap": 8}
    with MilvusStore.open(sys.argv[1], "docs", encoder_info=EncoderInfo.of(encoder)) as store:
        report = ingest(open_sources([sys.argv[2]], **options), encoder, store, batch_size=4,
                        on_progress=lambda progress: print("done", progress.added, flush=True))
        print("finished", report.added, flush=True)
    """
)


@pytest.mark.slow
def test_a_killed_document_ingest_resumes_to_the_exact_items(tiny_base, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text(STOPS)
    make_docx(docs / "report.docx", png((0, 90, 0)))
    db = tmp_path / "db" / "milvus.db"
    kill_when_added(INTERRUPTIBLE, [str(db), str(docs), str(tmp_path / "cache")], 12, tmp_path)
    options = _options(tiny_base, tmp_path)
    query = tiny_base.encode_text(["x"])[0]
    with MilvusStore.open(db, "docs", encoder_info=EncoderInfo.of(tiny_base)) as store:
        partial = store.count()
        report = ingest(open_sources([docs], **options), tiny_base, store)
        resumed = {h.id for h in store.search(query, k=1000)}
    with MilvusStore.open(tmp_path / "clean.db", "docs", encoder_info=EncoderInfo.of(tiny_base)) as fresh:
        ingest(open_sources([docs], **options), tiny_base, fresh)
        clean = {h.id for h in fresh.search(query, k=1000)}
    assert 12 <= partial < len(clean) and report.unchanged >= 12
    assert resumed == clean


@pytest.mark.slow
def test_names_are_filters_in_the_cli_and_the_summary_names_what_was_passed_over(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "guide.md").write_text("# Guide\n\nRead the signals.\n\n## Install\n\nRun the installer.\n")
    (docs / "notes.txt").write_text("The depot opens at dawn.")
    (docs / "budget.bin").write_bytes(b"\x00\x01binary")
    (docs / "backup.zip").write_bytes(b"PK\x03\x04")
    result = run(tmp_path, "ingest", str(docs), "-c", "kb")
    assert result.exit_code == 0, result.output
    assert "passed over 2 files: 1 .bin file (budget.bin), 1 .zip file (backup.zip)" in result.output
    summary = json.loads(run(tmp_path, "ingest", str(docs), "-c", "kb", "--json").stdout)
    assert (summary["added"], summary["unchanged"], summary["passed_over"]) == (0, 3, 2)

    def names(*flags: str) -> list[str]:
        found = run(tmp_path, "search", "-c", "kb", "-t", "signals", "--mode", "text-to-text", *flags, "--json")
        return sorted(r["name"] for r in json.loads(found.stdout)["results"])

    assert names() == ["notes.txt#line=0,1", "sub/guide.md#guide", "sub/guide.md#install"]
    assert names("-f", "source=sub/guide.md#install") == ["sub/guide.md#install"]  # the name as shown
    assert names("-f", "source=guide.md") == ["sub/guide.md#guide", "sub/guide.md#install"]  # the file name
    assert names("-f", "source=sub/guide.md") == ["sub/guide.md#guide", "sub/guide.md#install"]  # its path
    assert names("-f", f"source={(docs / 'notes.txt').resolve()}") == ["notes.txt#line=0,1"]  # the stored path
    table = run(tmp_path, "search", "-c", "kb", "-t", "signals", "--mode", "text-to-text").stdout
    assert "sub/guide.md#install" in table


def test_a_readme_with_remote_badges_and_a_missing_picture_lands_with_warnings_and_exits_0(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README.md").write_text(
        "# Tool\n\n[![build](https://ci.example.com/badge.svg)](https://ci.example.com)\n\n"
        "The tool sorts freight wagons.\n\n![diagram](docs/diagram.png)\n"
    )
    result = run(tmp_path, "ingest", str(docs), "-c", "kb", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["added"], summary["skipped"], summary["warnings"]) == (1, 0, 2)
    problems = [
        p for p in map(json.loads, Path(summary["report"]).read_text().splitlines()) if "kind" in p
    ]  # problems, not runs
    assert sorted((p["kind"], p["severity"]) for p in problems) == [
        ("not_found", "warning"),
        ("url_disabled", "warning"),
    ]


def test_ocr_all_without_the_extra_is_refused_with_the_advice(tmp_path, monkeypatch):
    from connectors.sources import ocr

    monkeypatch.setattr(ocr, "ocr_installed", lambda: False)
    (tmp_path / "scan.png").write_bytes(png((255, 255, 255)))
    result = run(tmp_path, "ingest", str(tmp_path / "scan.png"), "-c", "kb", "--ocr", "all")
    assert result.exit_code == 2 and "pip install 'mmrag[ocr]'" in result.output, result.output
    assert "--ocr auto" in result.output
    bad = run(tmp_path, "ingest", str(tmp_path / "scan.png"), "-c", "kb", "--ocr", "sometimes")
    assert bad.exit_code == 2 and "--ocr must be auto, all or off" in bad.output


@pytest.mark.slow  # Milvus Lite and the tiny model: some 5-10 s
def test_ocr_runs_in_the_preprocessing_workers_several_pages_at_once(tiny_base, tmp_path, monkeypatch):
    from rag.embeddings.preprocess import Preprocessor
    from tests.connectors.test_ocr_workers import FakeEngine, scans, use

    fake = FakeEngine(together=2)  # two pages must be at work together, or each waits 30 s and fails
    use(monkeypatch, fake)
    workers = Preprocessor(tiny_base.image_transform, 2)
    monkeypatch.setattr(tiny_base, "preprocessor", workers)
    scans(tmp_path / "docs" / "scan.pdf", (200, 380, 440, 500))
    options = {**_options(tiny_base, tmp_path), "ocr": "auto", "pdf_figures": False}
    try:
        with _store(tmp_path, tiny_base) as store:
            report = ingest(open_sources([tmp_path / "docs"], **options), tiny_base, store)
            stored = {h.item.name: h.item for h in store.search(tiny_base.encode_text(["page"])[0], k=100)}
    finally:
        workers.close()
    assert report.skipped == [] and fake.most_at_once == 2
    assert {name for name, _ in fake.calls} <= {"rag-prepare_0", "rag-prepare_1"}  # not the reader, not the encoder
    assert stored["scan.pdf#page=2"].text.startswith("words of a page 380 wide")
    assert stored["scan.pdf#page=2"].metadata["text_origin"] == "ocr"
