"""The ingest pipeline on Milvus Lite with the tiny Visualized-BGE: idempotent, crash-safe, never silent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest
from rag.items import Severity, SourceErrorKind
from tests.helpers.documents import make_text_pdf

ROOT = Path(__file__).resolve().parents[2]


def make_folder(root: Path, n: int, caption: str = "item {i}: a {colour} square") -> Path:
    """n distinct images with caption sidecars."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 255, size=(40 + i % 7, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i:03d}.png")
        (root / f"img{i:03d}.txt").write_text(caption.format(i=i, colour=["red", "blue", "green"][i % 3]))
    return root


def open_store(tmp_path: Path, encoder, name: str = "items") -> MilvusStore:
    return MilvusStore.open(tmp_path / "db" / "milvus.db", name, encoder_info=EncoderInfo.of(encoder))


def test_ingest_stores_the_encoder_vectors(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 5)
    with open_store(tmp_path, tiny_base) as store:
        report = ingest(open_sources([folder]), tiny_base, store, batch_size=2)
        assert (report.added, report.unchanged, report.skipped) == (5, 0, [])
        assert store.count() == 5
        path = folder / "img003.png"
        fused, image = tiny_base.encode_fused_and_image([path], [(folder / "img003.txt").read_text()])
        hit = store.search(fused[0], k=1, with_vectors=True)[0]
        assert hit.item.image.uri == str(path)
        np.testing.assert_allclose(hit.embedding, fused[0], atol=1e-5)
        np.testing.assert_allclose(hit.image_embedding, image[0], atol=1e-5)


def test_progress_says_indexing_between_the_last_batch_and_the_end(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 3)
    seen: list[tuple[int, bool]] = []
    with open_store(tmp_path, tiny_base) as store:
        report = ingest(
            open_sources([folder]), tiny_base, store, on_progress=lambda r: seen.append((r.added, r.indexing))
        )
    assert seen[-1] == (3, True) and (3, False) not in seen[seen.index((3, True)) :]
    assert not report.indexing


def test_reingest_adds_nothing_and_a_changed_item_replaces_its_old_version(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 4)
    with open_store(tmp_path, tiny_base) as store:
        ingest(open_sources([folder]), tiny_base, store)
        again = ingest(open_sources([folder]), tiny_base, store)
        assert (again.added, again.unchanged) == (0, 4)
        (folder / "img001.txt").write_text("a new caption")
        changed = ingest(open_sources([folder]), tiny_base, store)
        assert (changed.added, changed.unchanged, changed.replaced, changed.removed) == (0, 3, 1, 0)  # no new item
        assert store.count() == 4
        texts = sorted(hit.item.text for hit in store.search(tiny_base.encode_text(["a new caption"])[0], k=10))
        assert "a new caption" in texts and "item 1: a blue square" not in texts
        make_folder(folder, 5)  # img000-img003 as they first were (img001 changes back), and one new item
        both = ingest(open_sources([folder]), tiny_base, store)
        assert (both.added, both.unchanged, both.replaced) == (1, 3, 1)
        assert store.count() == 5


def test_broken_corpus_lands_every_good_item_and_reports_every_bad_one(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 3)
    good_png = (folder / "img000.png").read_bytes()
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (folder / "text.jpg").write_text("not an image at all")
    (folder / "uncaptioned.png").write_bytes(good_png[:-1] + b"\x00")  # odd bytes, still an image
    Image.new("RGB", (30, 30), "red").save(folder / "uncaptioned.png")
    (folder / "long.png").write_bytes(good_png)
    (folder / "long.txt").write_text("word " * 3000)
    with open_store(tmp_path, tiny_base) as store:
        report = ingest(open_sources([folder]), tiny_base, store, batch_size=2)
        skipped = {Path(p.source).name for p in report.skipped}
        assert skipped == {"zero.png", "truncated.png", "text.jpg"}
        warnings = {(Path(p.source).name, p.kind) for p in report.problems if p.severity == Severity.WARNING}
        assert ("uncaptioned.png", SourceErrorKind.MISSING_CAPTION) in warnings
        assert ("long.png", SourceErrorKind.TEXT_OVER_WINDOW) in warnings
        assert report.added == store.count() == 5  # three captioned, one image-only, one long caption


def test_image_that_fails_to_decode_at_encode_time_is_reported(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 2)
    bomb = folder / "huge.png"
    Image.new("L", (3000, 3000)).save(bomb)
    with open_store(tmp_path, tiny_base) as store:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = 4_000_000  # sources check the header; the decoder refuses past the limit too
        try:
            report = ingest(open_sources([folder], max_image_pixels=10**8), tiny_base, store)
        finally:
            Image.MAX_IMAGE_PIXELS = old
        assert [Path(p.source).name for p in report.skipped] == ["huge.png"]
        assert report.added == 2


def test_hostile_metadata_stays_data(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 2)
    hostile = 'x" or 1==1 or source == "\\'
    (folder / "img000.txt").unlink()
    (folder / "img000.json").write_text(json.dumps({"text": hostile, "tags": [hostile], "owner": hostile}))
    with open_store(tmp_path, tiny_base) as store:
        ingest(open_sources([folder]), tiny_base, store)
        assert store.count({"owner": hostile}) == 1
        assert store.count({"tags": hostile}) == 1
        assert store.count({"owner": 'x" or 1==1'}) == 0
        [item] = store.get(
            [h.id for h in store.search(tiny_base.encode_text([hostile])[0], k=2) if h.item.text == hostile]
        )
        assert item.metadata["owner"] == hostile and item.tags == [hostile]


def test_manifest_and_pdf_ingest(tiny_base, tmp_path):
    make_folder(tmp_path / "imgs", 3)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        "\n".join(json.dumps({"image": f"imgs/img{i:03d}.png", "text": f"row {i}", "split": "train"}) for i in range(3))
    )
    make_text_pdf(tmp_path / "doc.pdf", [[], []])
    with open_store(tmp_path, tiny_base) as store:
        report = ingest(open_sources([manifest, tmp_path / "doc.pdf"], cache_dir=tmp_path / "cache"), tiny_base, store)
        assert report.added == store.count() == 5
        assert store.count({"split": "train"}) == 3
        assert store.count({"source": "doc.pdf"}) == 2  # by file name: its two (textless) pages
        assert store.count({"source": ["doc.pdf#page=1", "doc.pdf#page=2"]}) == 2  # by name


def test_another_encoder_is_refused(tiny_base, tmp_path):
    from connectors.milvus import EncoderMismatchError
    from tests.conftest import load_tiny

    open_store(tmp_path, tiny_base).close()
    m3 = load_tiny("m3")
    with pytest.raises(EncoderMismatchError, match="fingerprint|encoder"):
        open_store(tmp_path, m3)


INTERRUPTIBLE = textwrap.dedent(
    """
    import sys
    from tests.conftest import load_tiny
    from connectors.milvus import EncoderInfo, MilvusStore
    from connectors.sources import open_sources
    from rag.ingest import ingest

    encoder = load_tiny("base")
    with MilvusStore.open(sys.argv[1], "items", encoder_info=EncoderInfo.of(encoder)) as store:
        report = ingest(open_sources([sys.argv[2]]), encoder, store, batch_size=4,
                        on_progress=lambda progress: print("done", progress.added, flush=True))
        print("finished", report.added, flush=True)
    """
)


def kill_when_added(script: str, args: list[str], added: int, tmp_path: Path) -> None:
    """Run ``script`` (it prints ``done <added>`` as it goes) and SIGKILL it once ``added`` items are written."""
    path = tmp_path / "run.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if line.startswith("done") and int(line.split()[1]) >= added:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"


@pytest.mark.slow
def test_killed_run_resumes_to_the_exact_count(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 120)
    db = tmp_path / "db" / "milvus.db"
    kill_when_added(INTERRUPTIBLE, [str(db), str(folder)], 12, tmp_path)

    with MilvusStore.open(db, "items", encoder_info=EncoderInfo.of(tiny_base)) as store:
        partial = store.count()
        assert partial < 120
        report = ingest(open_sources([folder]), tiny_base, store)
        assert report.added + report.unchanged == 120
        assert store.count() == 120
        assert len(store.existing_ids([h.id for h in store.search(tiny_base.encode_text(["x"])[0], k=200)])) == 120


def test_items_sharing_a_source_across_batches_are_kept_and_replaced_correctly(tiny_base, tmp_path):
    # All rows of a manifest share its path as source; batches of 2 split them.
    make_folder(tmp_path / "imgs", 5)
    manifest = tmp_path / "manifest.jsonl"

    def write(captions: list[str]) -> None:
        rows = [{"image": f"imgs/img{i % 5:03d}.png", "text": c} for i, c in enumerate(captions)]
        manifest.write_text("\n".join(json.dumps(r) for r in rows))

    captions = [f"caption {i}" for i in range(7)]  # two rows reuse an image with another caption
    write(captions)
    with open_store(tmp_path, tiny_base) as store:
        assert ingest(open_sources([manifest]), tiny_base, store, batch_size=2).added == 7
        assert store.count() == 7
        captions[5] = "edited caption"
        write(captions)
        report = ingest(open_sources([manifest]), tiny_base, store, batch_size=2)
        assert (report.added, report.unchanged, report.replaced) == (0, 6, 1)
        assert store.count() == 7
        assert store.count({"text": "edited caption"}) == 1 and store.count({"text": "caption 5"}) == 0


def test_a_changed_item_that_fails_to_decode_keeps_its_older_version(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 2)
    with open_store(tmp_path, tiny_base) as store:
        ingest(open_sources([folder]), tiny_base, store)
        Image.new("L", (3000, 3000)).save(folder / "img001.png")  # passes the sources' check, then refused
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = 4_000_000
        try:
            report = ingest(open_sources([folder], max_image_pixels=10**8), tiny_base, store)
        finally:
            Image.MAX_IMAGE_PIXELS = old
        assert [Path(p.source).name for p in report.skipped] == ["img001.png"]
        assert (report.added, report.replaced) == (0, 0)
        assert store.count({"source": str(folder / "img001.png")}) == 1


def test_without_the_source_decode_check_broken_images_are_still_reported(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 3)
    good = (folder / "img000.png").read_bytes()
    (folder / "img001.png").write_bytes(good[: len(good) // 2])  # truncated: its header still reads
    with open_store(tmp_path, tiny_base) as store:
        report = ingest(open_sources([folder], decode_check=False), tiny_base, store)
    assert report.added == 2
    [problem] = report.skipped
    assert problem.kind is SourceErrorKind.CORRUPT_IMAGE and problem.source.endswith("img001.png")
