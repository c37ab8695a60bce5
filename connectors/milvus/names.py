"""The names of stored items: which ids each stored path holds, which names are taken, and renames in place
(the vectors kept, nothing encoded again)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from connectors.milvus import schema, writes
from connectors.milvus.core import ID_BATCH, WRITE_BATCH, StoreCore, chunks
from connectors.milvus.filters import field_in, quote
from rag.items import moved_to


def ids_by_source(core: StoreCore, sources: Sequence[str]) -> dict[str, set[str]]:
    """The stored ids of each of these sources, by stored path."""
    found: dict[str, set[str]] = {source: set() for source in sources}
    for batch in chunks(list(found), ID_BATCH):
        for row in core.scan(field_in(schema.SOURCE, batch), [schema.ID, schema.SOURCE]):
            found[row[schema.SOURCE]].add(row[schema.ID])
    return found


def ids_by_document(core: StoreCore, documents: Sequence[str]) -> dict[str, set[str]]:
    """The stored ids of each of these documents (``ref_doc_id``): what a re-ingest of a document replaces."""
    found: dict[str, set[str]] = {document: set() for document in documents}
    for batch in chunks(list(found), ID_BATCH):
        for row in core.scan(field_in(schema.REF_DOC_ID, batch), [schema.ID, schema.REF_DOC_ID]):
            found[row[schema.REF_DOC_ID]].add(row[schema.ID])
    return found


def sources_within(core: StoreCore, folders: Sequence[str], files: Sequence[str]) -> dict[str, set[str]]:
    """The stored ids of every stored path that is one of ``files`` or lies under one of ``folders`` (absolute
    paths, compared as given), in one pass over the rows per folder and one per batch of files (never one per
    stored file). A folder is looked up by the prefix of its path before any LIKE wildcard, the rest compared here."""
    found: dict[str, set[str]] = {}
    prefixes = [folder.rstrip("/") + "/" for folder in folders]
    for prefix in prefixes:
        plain = re.split(r"[%_\\]", prefix, maxsplit=1)[0]  # Lite cannot escape LIKE wildcards: match less, then check
        for row in core.scan(f"{schema.SOURCE} like {quote(plain + '%')}", [schema.ID, schema.SOURCE]):
            if row[schema.SOURCE].startswith(prefix):
                found.setdefault(row[schema.SOURCE], set()).add(row[schema.ID])
    for batch in chunks(sorted(set(files)), ID_BATCH):
        for row in core.scan(field_in(schema.SOURCE, batch), [schema.ID, schema.SOURCE]):
            found.setdefault(row[schema.SOURCE], set()).add(row[schema.ID])
    return found


def documents(
    core: StoreCore, *, sources: Sequence[str], documents: Sequence[str], file_names: Sequence[str]
) -> set[tuple[str, str]]:
    """``(stored path, document)`` of every item whose stored path, document or file name is one of these."""
    asked = ((schema.SOURCE, sources), (schema.DOCUMENT, documents), (schema.FILE_NAME, file_names))
    conditions = [field_in(field, batch) for field, values in asked for batch in chunks(sorted(set(values)), ID_BATCH)]
    found: set[tuple[str, str]] = set()
    for group in chunks(conditions, 3):  # one query for a run's usual chunk
        rows = core.scan(" or ".join(f"({c})" for c in group), [schema.SOURCE, schema.DOCUMENT])
        found.update((row[schema.SOURCE], row[schema.DOCUMENT]) for row in rows)
    return found


def rename(core: StoreCore, documents: Mapping[str, str]) -> dict[str, int]:
    """Move every stored item of each source (by stored path) to its new document, its anchor kept; returns how
    many items of each source were rewritten (those named so already are not)."""
    core.writable()
    moved: dict[str, str] = {}  # id: its new document
    for batch in chunks(sorted(documents), ID_BATCH):
        for row in core.scan(field_in(schema.SOURCE, batch), [schema.ID, schema.SOURCE, schema.DOCUMENT]):
            if row[schema.DOCUMENT] != documents[row[schema.SOURCE]]:
                moved[row[schema.ID]] = documents[row[schema.SOURCE]]
    rewritten: Counter[str] = Counter()
    for batch in chunks(list(moved), WRITE_BATCH):  # the vectors read a batch at a time
        rows = core.rows(batch, core.output_fields(True))
        items = [schema.from_row(row) for row in rows]
        items = [item.model_copy(update={"name": moved_to(item.name, moved[item.id])}) for item in items]
        fused = np.asarray([row[schema.FUSED] for row in rows], dtype=np.float32)
        image = np.asarray([row[schema.IMAGE] for row in rows], dtype=np.float32)  # the fused one where none
        writes.upsert(core, items, fused, image, new=False)
        rewritten.update(item.source for item in items)
    return dict(rewritten)
