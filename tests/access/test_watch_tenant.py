"""`rag ingest --watch --tenant`: a watch writes its tenant's items and never touches another tenant's.

The batches are applied as the watch applies them (``Watcher.apply``, or ``Watcher.run`` over a fed list of
changes), without waiting for the OS's notifications: ``tests/ingest/test_watch.py`` covers those.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from watchfiles import Change

import rag.ingest.watch
from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import SourceOptions, open_sources
from rag.access.tenants import tagged
from rag.ingest import ingest
from rag.ingest.watch import Watcher
from tests.ingest.test_cli_ingest import run
from tests.ingest.test_pipeline import make_folder


def _rows(store: MilvusStore, tenant: str) -> dict[str, tuple[str, str, str, bytes]]:
    """id → (source, name, text, fused vector bytes) of every item of ``tenant``."""
    return {
        item.id: (item.source, item.name, item.text, np.asarray(fused).tobytes())
        for item, fused, _ in store.iter_vectors(filter={"tenant": tenant})
    }


def _settled(*paths: Path) -> list[str]:
    """The paths, dated a few seconds back (a watch reads a file once no one wrote to it for a while)."""
    past = time.time() - 10
    for path in paths:
        if path.exists():
            os.utime(path, (past, past))
    return [str(path) for path in paths]


def test_a_tenants_watch_leaves_another_tenants_items_with_the_same_names_alone(tiny_base, tmp_path: Path) -> None:
    acme, bravo = make_folder(tmp_path / "acme" / "photos", 3), make_folder(tmp_path / "bravo" / "photos", 3)
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(tagged(open_sources([acme]), "acme"), tiny_base, store)
        # bravo owns the same file names in its folder, and one file inside acme's (put there and ingested by
        # bravo before acme's watch began)
        (acme / "lent.txt").write_text("bravo's caption")
        (acme / "lent.png").write_bytes((bravo / "img002.png").read_bytes())
        ingest(tagged(open_sources([bravo, acme / "lent.png"]), "bravo"), tiny_base, store)
        bravo_before = _rows(store, "bravo")
        assert len(bravo_before) == 4 and len(_rows(store, "acme")) == 3

        watcher = Watcher([acme], tiny_base, store, SourceOptions(), quiet_seconds=0.5, tenant="acme")
        (acme / "new.png").write_bytes((bravo / "img000.png").read_bytes())  # created (bytes bravo has too)
        (acme / "new.txt").write_text("a freshly painted fence")
        (acme / "img001.txt").write_text("a fence painted twice")  # edited
        (acme / "img002.png").unlink()  # deleted
        (acme / "img002.txt").unlink()
        (acme / "lent.txt").write_text("acme's caption over bravo's file")  # edited, but bravo's
        changed = ("new.png", "new.txt", "img001.txt", "img002.png", "img002.txt", "lent.txt")
        report = watcher.apply(_settled(*(acme / name for name in changed)))  # one batch, as a watch groups them
        assert report is not None
        assert (report.added, report.replaced, report.removed) == (1, 1, 1)
        assert [(Path(p.source).name, "another tenant" in p.reason) for p in report.skipped] == [("lent.png", True)]

        assert _rows(store, "bravo") == bravo_before  # ids, paths, names, texts and vectors: untouched
        acme_now = {Path(source).name: text for source, _, text, _ in _rows(store, "acme").values()}
        assert acme_now == {
            "img000.png": "item 0: a red square",
            "img001.png": "a fence painted twice",
            "new.png": "a freshly painted fence",
        }
        assert store.count() == 7  # nothing else in the collection, of any tenant


@pytest.mark.slow  # an ingest through the CLI, loading the model
def test_the_watch_command_writes_in_its_tenant_and_audits_each_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, folder, spare = "acme", make_folder(tmp_path / "photos", 2), make_folder(tmp_path / "spare", 3)

    def changes(*paths: str, **options: object) -> Iterator[set[tuple[Change, str]]]:
        """What watchfiles would report: nothing yet (the watch is ready), then a picture and its caption."""
        assert paths == (str(folder),)
        yield set()
        (folder / "new.png").write_bytes((spare / "img002.png").read_bytes())
        (folder / "new.txt").write_text("a new picture")
        yield {(Change.added, path) for path in _settled(folder / "new.png", folder / "new.txt")}

    monkeypatch.setattr(rag.ingest.watch.watchfiles, "watch", changes)
    result = run(tmp_path, "ingest", str(folder), "-c", "kb", "--tenant", tenant, "--watch", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["watch"]["added"] == 1
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", create=False) as store:
        assert sorted((Path(item.source).name, item.tenant) for item, _, _ in store.iter_vectors()) == [
            ("img000.png", tenant),
            ("img001.png", tenant),
            ("new.png", tenant),
        ]
    audit = [json.loads(line) for line in (tmp_path / "data" / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["tenant"], a.get("watch")) for a in audit] == [
        ("ingest", tenant, None),
        ("ingest", tenant, True),
    ]
    assert audit[1]["files"] == [str(folder / "new.png"), str(folder / "new.txt")]
    assert (audit[1]["added"], audit[1]["removed"], audit[1]["collection"]) == (1, 0, "kb")
