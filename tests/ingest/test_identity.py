"""Document identity on the ingest path: each item records its document (``ref_doc_id``) and its file's content
hash; re-ingesting a document replaces that document's items and nothing else (the issue's two data-loss cases)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import SourceOptions, iter_llama_nodes, open_sources
from rag.ingest import ingest
from rag.items import KnowledgeItem
from tests.helpers.documents import jpeg, make_pdf, png


def open_store(tmp_path: Path, encoder, name: str = "items") -> MilvusStore:
    return MilvusStore.open(tmp_path / "db" / "milvus.db", name, encoder_info=EncoderInfo.of(encoder))


def stored(store: MilvusStore) -> list[KnowledgeItem]:
    return sorted((item for item, _, _ in store.iter_vectors()), key=lambda item: item.name)


def options(tmp_path: Path, encoder) -> SourceOptions:
    return SourceOptions(cache_dir=tmp_path / "cache", text_window=encoder.text_window)


def test_a_third_document_leaves_the_first_two_alone(tiny_base, tmp_path):
    from llama_index.core import Document

    opts = options(tmp_path, tiny_base)
    with open_store(tmp_path, tiny_base) as store:
        first = [Document(text="quokkas live on Rottnest island", doc_id="a"), Document(text="wombats dig", doc_id="b")]
        assert ingest(iter_llama_nodes(first, opts), tiny_base, store).added == 2
        third = ingest(iter_llama_nodes([Document(text="numbats eat termites", doc_id="c")], opts), tiny_base, store)
        assert (third.added, third.replaced, third.removed) == (1, 0, 0)
        assert [(i.name, i.ref_doc_id, i.text) for i in stored(store)] == [
            ("a", "a", "quokkas live on Rottnest island"),
            ("b", "b", "wombats dig"),
            ("c", "c", "numbats eat termites"),
        ]
        # a new version of "b" replaces b's item, and only it
        again = ingest(iter_llama_nodes([Document(text="wombats dig burrows", doc_id="b")], opts), tiny_base, store)
        assert (again.added, again.replaced, again.removed) == (0, 1, 0)
        assert [(i.name, i.text) for i in stored(store)] == [
            ("a", "quokkas live on Rottnest island"),
            ("b", "wombats dig burrows"),
            ("c", "numbats eat termites"),
        ]


def _pages(folder: Path) -> list:
    from llama_index.core import SimpleDirectoryReader

    return SimpleDirectoryReader(str(folder), filename_as_id=True).load_data()


def test_one_reingested_pdf_page_leaves_its_sibling_pages_alone(tiny_base, tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    pdf = make_pdf(folder / "spec.pdf", jpeg((200, 0, 0), (128, 96)))
    other = make_pdf(folder / "other.pdf", jpeg((0, 200, 0), (128, 96)))
    pages = _pages(folder)
    assert len(pages) == 4 and {p.metadata["page_label"] for p in pages} == {"1", "2"}
    opts = options(tmp_path, tiny_base)
    with open_store(tmp_path, tiny_base) as store:
        assert ingest(iter_llama_nodes(pages, opts), tiny_base, store).added == 4
        before = stored(store)
        assert [i.name for i in before] == [
            "other.pdf#page=1",
            "other.pdf#page=2",
            "spec.pdf#page=1",
            "spec.pdf#page=2",
        ]
        assert {i.source for i in before} == {str(pdf), str(other)}  # the file, as sync's prune sees it
        assert len({i.ref_doc_id for i in before}) == 4  # each page its own document
        edited = next(p for p in pages if p.metadata["file_name"] == "spec.pdf" and p.metadata["page_label"] == "2")
        edited.set_content("Second page text, edited")
        report = ingest(iter_llama_nodes([edited], opts), tiny_base, store)
        assert (report.added, report.replaced, report.removed) == (0, 1, 0)
        after = stored(store)
        assert [i.name for i in after] == [i.name for i in before]
        assert [i.text for i in after if i.name != "spec.pdf#page=2"] == [
            i.text for i in before if i.name != "spec.pdf#page=2"
        ]
        assert next(i.text for i in after if i.name == "spec.pdf#page=2") == "Second page text, edited"


def test_a_document_is_chunked_to_the_encoders_window_with_its_tokenizer(tiny_base, tmp_path):
    from llama_index.core import Document

    window = tiny_base.text_window
    sentences = [f"Sentence number {i} tells of quokkas, wombats and numbats on the island." for i in range(300)]
    opts = options(tmp_path, tiny_base)
    items = [r for r in iter_llama_nodes([Document(text=" ".join(sentences), doc_id="long")], opts)]
    assert all(isinstance(r, KnowledgeItem) for r in items)  # no over-window warning: every chunk fits
    assert len(items) > 3
    assert all(window.count(i.text) + window.specials <= window.window for i in items)
    assert [i.name for i in items[:3]] == ["long", "long#chunk=2", "long#chunk=3"]
    assert {i.ref_doc_id for i in items} == {"long"}


def test_reingesting_a_file_replaces_its_items_and_records_its_content_hash(tiny_base, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nAlpha text.\n\n# B\n\nBeta text.\n")
    (folder / "b.md").write_text("# Other\n\nUntouched.\n")
    make_pdf(folder / "doc.pdf", jpeg((200, 0, 0), (128, 96)))
    (folder / "pic.png").write_bytes(png((1, 2, 3)))
    with open_store(tmp_path, tiny_base) as store:
        opts = options(tmp_path, tiny_base).model_dump()
        ingest(open_sources([folder], **opts), tiny_base, store)
        before = stored(store)
        for item in before:
            path = Path(item.ref_doc_id)
            assert item.ref_doc_id == item.source and path.is_absolute()
            assert item.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
        (folder / "a.md").write_text("# A\n\nAlpha text, changed.\n")
        report = ingest(open_sources([folder], **opts), tiny_base, store)
        assert (report.replaced, report.removed) == (1, 1)  # section a changed, section b gone
        after = stored(store)
        assert [i for i in after if not i.name.startswith("a.md")] == [
            i for i in before if not i.name.startswith("a.md")
        ]
        assert [i.text for i in after if i.name.startswith("a.md")] == ["A\n\nAlpha text, changed."]


def test_a_manifest_row_belongs_to_its_manifest_and_hashes_its_image(tmp_path):
    rows = 2
    images = tmp_path / "img"
    images.mkdir()
    for i in range(rows):
        (images / f"{i}.jpg").write_bytes(jpeg((10 * i, 0, 0)))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"image": f"img/{i}.jpg", "text": f"row {i}"}) + "\n" for i in range(rows)))
    items = [r for r in open_sources([manifest], cache_dir=tmp_path / "cache") if isinstance(r, KnowledgeItem)]
    assert [(i.source, i.ref_doc_id) for i in items] == [
        (str(manifest.resolve()), str(manifest.resolve())) for i in range(rows)
    ]
    assert [i.content_hash for i in items] == [
        hashlib.sha256((images / f"{i}.jpg").read_bytes()).hexdigest() for i in range(rows)
    ]


def test_reingesting_a_manifest_leaves_a_folders_items_of_the_same_pictures_alone(tiny_base, tmp_path):
    """A folder and a manifest that lists the folder's pictures are two documents' worth of items: re-ingesting
    the manifest (one row changed, one dropped) replaces its own rows and nothing the folder stored."""
    images = tmp_path / "img"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.jpg").write_bytes(jpeg((60 * i, 0, 0)))
    manifest = tmp_path / "m.jsonl"

    def write_rows(rows: dict[int, str]) -> None:
        manifest.write_text("".join(json.dumps({"image": f"img/{i}.jpg", "text": t}) + "\n" for i, t in rows.items()))

    write_rows({0: "red", 1: "dark red", 2: "darker red"})
    opts = options(tmp_path, tiny_base)
    with open_store(tmp_path, tiny_base) as store:
        ingest(open_sources([images], opts), tiny_base, store)
        folder = {i.id: i.name for i in stored(store)}
        ingest(open_sources([manifest], opts), tiny_base, store)
        write_rows({0: "red, retold", 1: "dark red"})
        report = ingest(open_sources([manifest], opts), tiny_base, store)
        after = stored(store)
        assert {i.id: i.name for i in after if i.id in folder} == folder  # the folder's three items, untouched
        rows = sorted(i.text for i in after if i.source == str(manifest.resolve()))
        assert rows == ["dark red", "red, retold"]
        assert (report.added, report.replaced, report.removed, report.unchanged) == (0, 1, 1, 1)
        assert len(after) == len(folder) + 2
