"""Names unique within a collection: two folders holding the same files, ingested in two runs or in one, give
each item its own name; each name finds exactly its item in the CLI and the API, a file name finds every file
of that name, re-ingests add nothing, and a changed file replaces only its own items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest
from rag.ingest.ledger import Ledger
from rag.ingest.names import qualified
from rag.server import create_app
from rag.settings import Settings
from tests.helpers.documents import png
from tests.ingest.test_cli_ingest import run

#: The names both folders' items get, once both are in the collection.
BOTH = [
    "archive/a.png",
    "archive/guide.md#guide",
    "archive/rows.jsonl#line=1",
    "photos/a.png",
    "photos/guide.md#guide",
    "photos/rows.jsonl#line=1",
]


def _roots(tmp_path: Path) -> tuple[Path, Path]:
    """``x/photos`` and ``x/archive``, each with an ``a.png``, a ``guide.md`` and a ``rows.jsonl`` of its own."""
    roots = []
    for i, folder in enumerate(("photos", "archive")):
        root = tmp_path / "x" / folder
        root.mkdir(parents=True)
        (root / "a.png").write_bytes(png((200, 40 + 100 * i, 30)))
        (root / "a.txt").write_text(f"a picture kept in {folder}")
        (root / "guide.md").write_text(f"# Guide\n\nThe signals of the {folder} line.\n")
        (root / "rows.jsonl").write_text(json.dumps({"text": f"a row about the {folder} depot"}) + "\n")
        roots.append(root)
    return roots[0], roots[1]


def _search(tmp_path: Path, *flags: str) -> list[dict]:
    found = run(tmp_path, "search", "-c", "kb", "-t", "signals", "--mode", "text-to-any", "-k", "50", *flags, "--json")
    assert found.exit_code == 0, found.output
    return json.loads(found.stdout)["results"]


def _names(tmp_path: Path, *flags: str) -> list[str]:
    return sorted(result["name"] for result in _search(tmp_path, *flags))


def _ingest(tmp_path: Path, *roots: Path) -> dict:
    result = run(tmp_path, "ingest", *map(str, roots), "-c", "kb", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check_filters(tmp_path: Path, tiny_base) -> None:
    """Each shown name finds exactly its item, in the CLI and the API; a file name finds the file in both folders."""
    results = _search(tmp_path)
    assert sorted(r["name"] for r in results) == BOTH  # unique
    for result in results:
        assert [r["id"] for r in _search(tmp_path, "-f", f"source={result['name']}")] == [result["id"]]
    assert _names(tmp_path, "-f", "source=a.png") == ["archive/a.png", "photos/a.png"]
    assert _names(tmp_path, "-f", "source=photos/guide.md") == ["photos/guide.md#guide"]  # a document

    settings = Settings(milvus_uri=str(tmp_path / "db" / "milvus.db"), collection="kb", data_dir=tmp_path / "data")
    with TestClient(create_app(settings, encoder=tiny_base)) as client:
        for result in results:
            query = {"text": "signals", "mode": "text-to-any", "filter": f"source={result['name']}"}
            found = client.post("/api/search", data=query).json()["results"]
            assert [(r["id"], r["name"]) for r in found] == [(result["id"], result["name"])]
        found = client.post("/api/search", data={"text": "x", "filter": "source=rows.jsonl"}).json()["results"]
        assert sorted(r["name"] for r in found) == ["archive/rows.jsonl#line=1", "photos/rows.jsonl#line=1"]


@pytest.mark.slow
def test_two_folders_with_the_same_files_in_two_runs(tmp_path, tiny_base):
    photos, archive = _roots(tmp_path)
    first = _ingest(tmp_path, photos)
    assert first["added"] == 3 and _names(tmp_path) == ["a.png", "guide.md#guide", "rows.jsonl#line=1"]
    second = _ingest(tmp_path, archive)
    assert (second["added"], second["warnings"]) == (3, 3)  # the first folder's files renamed, each reported
    report = [
        p for p in map(json.loads, Path(second["report"]).read_text().splitlines()) if "kind" in p
    ]  # problems, not runs
    assert sorted(p["reason"].split(" (")[0] for p in report if p["kind"] == "renamed") == [
        "now named photos/a.png",
        "now named photos/guide.md",
        "now named photos/rows.jsonl",
    ]
    _check_filters(tmp_path, tiny_base)

    again = _ingest(tmp_path, photos, archive)
    assert (again["added"], again["unchanged"], again["replaced"], again["warnings"]) == (0, 6, 0, 0)
    ids = {r["name"]: r["id"] for r in _search(tmp_path)}
    (archive / "a.png").write_bytes(png((10, 10, 250)))  # a new picture in one folder
    changed = _ingest(tmp_path, archive)
    assert (changed["added"], changed["replaced"], changed["removed"], changed["unchanged"]) == (0, 1, 0, 2)
    now = {r["name"]: r["id"] for r in _search(tmp_path)}
    assert sorted(now) == BOTH and now["archive/a.png"] != ids["archive/a.png"]
    assert {k: v for k, v in now.items() if k != "archive/a.png"} == {
        k: v for k, v in ids.items() if k != "archive/a.png"
    }


@pytest.mark.slow
def test_two_folders_with_the_same_files_in_one_run(tmp_path, tiny_base):
    photos, archive = _roots(tmp_path)
    first = _ingest(tmp_path, photos, archive)
    assert (first["added"], first["warnings"]) == (6, 0)  # named apart before anything was stored
    _check_filters(tmp_path, tiny_base)
    again = _ingest(tmp_path, archive, photos)  # in the other order: each keeps its name
    assert (again["added"], again["unchanged"]) == (0, 6)
    assert _names(tmp_path) == BOTH


def test_a_bare_name_moves_under_its_folder_when_a_file_deeper_down_shares_it(tmp_path, tiny_base):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(png((1, 2, 3)))
    (root / "sub" / "a.png").write_bytes(png((3, 2, 1)))
    (root / "b.png").write_bytes(png((5, 5, 5)))
    _ingest(tmp_path, root)
    assert _names(tmp_path) == ["b.png", "photos/a.png", "sub/a.png"]
    assert _names(tmp_path, "-f", "source=photos/a.png") == ["photos/a.png"]
    assert _names(tmp_path, "-f", "source=a.png") == ["photos/a.png", "sub/a.png"]


def test_names_decided_before_anything_is_written_are_fixed_at_the_end(tmp_path, tiny_base):
    """As the Ray engine runs: every chunk admitted first, the vectors written afterwards."""
    photos, archive = _roots(tmp_path)
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ledger = Ledger(store)
        admitted = [ledger.admit(list(open_sources([root]))) for root in (photos, archive)]
        assert sorted(i.name for i in admitted[0]) == ["a.png", "guide.md#guide", "rows.jsonl#line=1"]
        for items in admitted:
            vectors = tiny_base.encode_text([item.text or "x" for item in items])
            ledger.write(items, vectors, vectors)
        report = ledger.finish()
        assert len([p for p in report.warnings if p.kind.value == "renamed"]) == 3
        stored = [hit.item.name for hit in store.search(tiny_base.encode_text(["x"])[0], k=50)]
    assert sorted(stored) == BOTH


def test_the_names_a_document_may_take() -> None:
    assert qualified("/x/photos/sub/a.png", "sub/a.png")[:3] == ["sub/a.png", "photos/sub/a.png", "x/photos/sub/a.png"]
    first, second = qualified("/srv/uploads/3fa2.png", "a.png"), qualified("/srv/uploads/77b1.png", "a.png")
    assert first[0] == second[0] == "a.png" and first[1] != second[1]  # an upload: under a hash of where it is kept
    assert first[1].endswith("/a.png") and len(first[1]) == len("12345678/a.png")


def test_a_run_stopped_before_it_renamed_is_healed_by_the_next(tmp_path, tiny_base):
    """A run killed after writing, before its end: the next run over either folder renames what it left."""
    photos, archive = _roots(tmp_path)
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([photos]), tiny_base, store)
        stopped = Ledger(store)
        items = stopped.admit(list(open_sources([archive])))
        vectors = tiny_base.encode_text([item.text or "x" for item in items])
        stopped.write(items, vectors, vectors)  # and no finish(): photos' files keep their bare names
        store.flush()
        left = sorted(hit.item.name for hit in store.search(tiny_base.encode_text(["x"])[0], k=50))
        assert "a.png" in left and "archive/a.png" in left
        report = ingest(open_sources([archive]), tiny_base, store)
        assert (report.added, report.unchanged, len(report.warnings)) == (0, 3, 3)
        names = sorted(hit.item.name for hit in store.search(tiny_base.encode_text(["x"])[0], k=50))
    assert names == BOTH
