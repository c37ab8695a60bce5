"""`rag delete`, `rag collections` and `rag drop`: what they remove, what they leave, and what they refuse."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.milvus.connection import Connection, ConnectOptions
from connectors.sources import open_sources
from rag.ingest import ingest
from tests.ingest.test_cli_ingest import CORPUS, run
from tests.ingest.test_pipeline import make_folder

GUIDE = "# Guide\n\nIntro text about carriages.\n\n## Install\n\nInstall the wheels.\n\n## Use\n\nDrive slowly.\n"


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus / "photos")
    (corpus / "docs").mkdir()
    (corpus / "docs" / "guide.md").write_text(GUIDE)
    (corpus / "docs" / "other.md").write_text("# Other\n\nA different page about bridges.\n")
    return corpus


def _items(tmp_path: Path, collection: str = "kb") -> dict[str, str]:
    """id → name of every item in the collection."""
    with MilvusStore.open(tmp_path / "db" / "milvus.db", collection, create=False) as store:
        return {item.id: item.name for item, _, _ in store.iter_vectors()}


def _last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_delete_removes_only_what_the_filter_matches(tmp_path):
    corpus = _corpus(tmp_path)
    assert run(tmp_path, "ingest", str(corpus), "-c", "kb").exit_code == 0
    assert run(tmp_path, "ingest", str(corpus / "photos"), "-c", "other").exit_code == 0
    before, other_before = _items(tmp_path), _items(tmp_path, "other")
    guide = {i for i, name in before.items() if name.startswith("docs/guide.md")}
    assert len(guide) >= 2  # a document of several sections: every one of them goes

    result = run(tmp_path, "delete", "-c", "kb", "-f", "source=docs/guide.md", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert _last_json(result) == {"collection": "kb", "filter": "source=docs/guide.md", "deleted": len(guide)}
    assert _items(tmp_path) == {i: n for i, n in before.items() if i not in guide}  # other pages, photos untouched
    assert _items(tmp_path, "other") == other_before  # another collection untouched

    tagged = run(tmp_path, "delete", "-c", "kb", "-f", '{"source": ["photos/carriage-day.jpg"]}', "--yes")
    assert tagged.exit_code == 0 and "deleted 1 item(s) from 'kb'" in tagged.output
    assert len(_items(tmp_path)) == len(before) - len(guide) - 1


def test_a_filter_matching_nothing_deletes_nothing_and_exits_0(tmp_path):
    corpus = _corpus(tmp_path)
    assert run(tmp_path, "ingest", str(corpus), "-c", "kb").exit_code == 0
    before = _items(tmp_path)
    result = run(tmp_path, "delete", "-c", "kb", "-f", "source=nowhere.md", "--json")  # no --yes needed for nothing
    assert result.exit_code == 0, result.output
    assert _last_json(result)["deleted"] == 0
    plain = run(tmp_path, "delete", "-c", "kb", "-f", "tags=none-such")
    assert plain.exit_code == 0 and "no item matches tags=none-such in 'kb': nothing deleted" in plain.output
    assert _items(tmp_path) == before


def test_delete_asks_and_without_a_terminal_needs_yes(tmp_path):
    corpus = _corpus(tmp_path)
    assert run(tmp_path, "ingest", str(corpus), "-c", "kb").exit_code == 0
    before = _items(tmp_path)
    result = run(tmp_path, "delete", "-c", "kb", "-f", "source=docs/other.md")
    assert result.exit_code == 2
    assert "1 item(s) match" in result.output and "add --yes" in result.output
    assert _items(tmp_path) == before


def test_delete_refuses_an_empty_filter_unless_all(tmp_path):
    corpus = _corpus(tmp_path)
    assert run(tmp_path, "ingest", str(corpus), "-c", "kb").exit_code == 0
    count = len(_items(tmp_path))
    for args in ([], ["-f", " "]):
        refused = run(tmp_path, "delete", "-c", "kb", "--yes", *args)
        assert refused.exit_code == 2 and "--all" in refused.output
    assert len(_items(tmp_path)) == count
    everything = run(tmp_path, "delete", "-c", "kb", "--all", "--yes", "--json")
    assert everything.exit_code == 0 and _last_json(everything)["deleted"] == count
    assert _items(tmp_path) == {}
    listed = _last_json(run(tmp_path, "collections", "--json"))
    assert [(c["name"], c["count"]) for c in listed] == [("kb", 0)]  # the collection stays, empty


def test_a_malformed_filter_gets_the_search_error(tmp_path):
    corpus = _corpus(tmp_path)
    assert run(tmp_path, "ingest", str(corpus), "-c", "kb").exit_code == 0
    deleted = run(tmp_path, "delete", "-c", "kb", "-f", "source", "--yes")
    searched = run(tmp_path, "search", "-c", "kb", "-t", "carriage", "-f", "source")
    assert deleted.exit_code == searched.exit_code == 2
    message = deleted.output.strip().splitlines()[-1]
    assert "key=value" in message and message in searched.output


def test_a_missing_collection_is_named_with_those_that_exist(tmp_path):
    corpus = _corpus(tmp_path)
    assert run(tmp_path, "ingest", str(corpus / "docs"), "-c", "kb").exit_code == 0
    for command in (["delete", "-f", "source=a.md", "--yes"], ["drop", "--yes"]):
        result = run(tmp_path, *command, "-c", "nope")
        assert result.exit_code == 2, result.output
        assert "no collection 'nope'" in result.output and "existing: kb" in result.output


def test_collections_lists_name_count_encoder_and_last_ingest(tmp_path):
    corpus = _corpus(tmp_path)
    assert run(tmp_path, "ingest", str(corpus / "photos"), "-c", "pics").exit_code == 0
    assert run(tmp_path, "ingest", str(corpus / "docs"), "-c", "kb").exit_code == 0
    listed = _last_json(run(tmp_path, "collections", "--json"))
    assert [(c["name"], c["count"]) for c in listed] == [("kb", len(_items(tmp_path))), ("pics", 7)]
    assert all(c["encoder"]["dim"] == 64 and c["last_ingest"] and not c["note"] for c in listed)
    table = run(tmp_path, "collections")
    assert table.exit_code == 0 and "pics" in table.output and "__bm25" not in table.output


@pytest.mark.slow
def test_drop_removes_the_collection_and_its_bm25_statistics(tmp_path):
    corpus = _corpus(tmp_path)
    assert run(tmp_path, "ingest", str(corpus / "photos"), "-c", "pics").exit_code == 0
    assert run(tmp_path, "ingest", str(corpus / "docs"), "-c", "kb").exit_code == 0
    kept = _items(tmp_path)
    refused = run(tmp_path, "drop", "-c", "pics")
    assert refused.exit_code == 2 and "add --yes" in refused.output
    dropped = run(tmp_path, "drop", "-c", "pics", "--yes", "--json")
    assert dropped.exit_code == 0, dropped.output
    assert _last_json(dropped) == {"collection": "pics", "dropped": True, "items": 7}
    client = Connection(tmp_path / "db" / "milvus.db", token=None, create=False, options=ConnectOptions())
    try:
        names = client.list_collections()
    finally:
        client.close()
    assert not [name for name in names if name.startswith("pics")] and "kb" in names
    assert _items(tmp_path) == kept


def test_a_delete_racing_an_ingest_loses_nothing_it_did_not_match(tiny_base, tmp_path):
    """One process ingests a folder while another deletes a different folder's items on the same shared store."""
    kept, gone, incoming = (make_folder(tmp_path / name, 12) for name in ("kept", "gone", "incoming"))
    uri = tmp_path / "db" / "milvus.db"
    with MilvusStore.open(uri, "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([kept, gone]), tiny_base, store)
        kept_ids = {item.id for item, _, _ in store.iter_vectors() if Path(item.source).parent == kept}
    errors: list[BaseException] = []

    def ingest_more() -> None:
        try:
            with MilvusStore.open(uri, "kb", encoder_info=EncoderInfo.of(tiny_base)) as writer:
                ingest(open_sources([incoming]), tiny_base, writer, batch_size=2)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=ingest_more)
    thread.start()
    with MilvusStore.open(uri, "kb", create=False) as deleter:
        sources = sorted(str(p) for p in gone.glob("*.png"))
        deleted = sum(deleter.delete(filter={"source": source}) for source in sources)
    thread.join()
    assert not errors and deleted == 12
    with MilvusStore.open(uri, "kb", create=False) as store:
        items = [item for item, _, _ in store.iter_vectors()]
    by_folder = {folder: {i.id for i in items if Path(i.source).parent == folder} for folder in (kept, gone, incoming)}
    assert len(by_folder[incoming]) == 12 and by_folder[gone] == set()
    assert len(kept_ids) == 12 and by_folder[kept] == kept_ids


def test_the_report_keeps_every_run_and_the_json_summary_names_failed_files(tmp_path):
    corpus = _corpus(tmp_path)
    (corpus / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    first = run(tmp_path, "ingest", str(corpus), "-c", "kb", "--json")
    assert first.exit_code == 1
    failed = _last_json(first)["failed"]
    assert [(Path(f["source"]).name, f["kind"]) for f in failed] == [("broken.png", "corrupt_image")]
    assert failed[0]["reason"]
    (corpus / "photos" / "broken.png").unlink()
    second = run(tmp_path, "ingest", str(corpus), "-c", "kb", "--json")
    assert second.exit_code == 0 and _last_json(second)["failed"] == []
    lines = [json.loads(line) for line in Path(_last_json(second)["report"]).read_text().splitlines()]
    runs = [line for line in lines if "summary" in line]
    assert len(runs) == 2 and runs[0]["run"] < runs[1]["run"]  # appended, one run after another, each timed
    assert [r["summary"]["skipped"] for r in runs] == [1, 0] and {r["collection"] for r in runs} == {"kb"}
    problems = [line for line in lines if "kind" in line]
    assert [(Path(p["source"]).name, p["run"]) for p in problems] == [("broken.png", runs[0]["run"])]
