"""Names unique within a collection, decided while a run admits its items (shared by every ingestion engine).

A reader names each item by its document (the file's path relative to what was ingested) plus its anchor. The
``source`` filter matches a name, a document or a file name, so a collection must neither hold two documents
of one name (``a.png`` from ``photos/`` and from ``archive/``) nor name a document by a bare file name that
another document has too (``a.png`` beside ``sub/a.png``): ``-f source=a.png`` would then find both. So:

- a document stored already keeps its name: a re-ingest names it as before;
- a new document takes the name its reader gave it while that name is free, else the name under as many of
  the folders above it as needed (``photos/a.png``, ``x/photos/a.png``), and past the last of them under a
  short hash of its stored path (an upload, whose stored path is no name: ``3fa2b1c4/a.png``);
- a document named by a bare file name that a new document shares is moved under its folder in turn, and its
  stored items are rewritten when the run ends (reported as a ``renamed`` warning).

What is taken is looked up in the store in batches, and every document of a run is checked again, so a run
killed before it renamed anything is healed by the next run that reads those documents.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import PurePath

from connectors.milvus.store import MilvusStore
from rag.items import KnowledgeItem, Severity, SourceError, SourceErrorKind, document_of, file_name_of, moved_to


def qualified(source: str, base: str) -> list[str]:
    """``base``, then ``base`` under more and more of the folders above it (where ``source`` is the path of the
    file ``base`` ends with), then under a short and a long hash of ``source``: the names a document may take."""
    names = [base]
    tail = tuple(base.split("/"))
    parts = PurePath(source).parts if os.path.isabs(source) else ()
    if len(parts) > len(tail) and parts[-len(tail) :] == tail:
        folders = parts[1 : -len(tail)]  # without the root ("/")
        names += ["/".join(folders[i:] + tail) for i in reversed(range(len(folders)))]
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return names + [f"{digest[:8]}/{base}", f"{digest}/{base}"]


def _bare(document: str) -> bool:
    """Whether ``document`` is a file name alone, which ``-f source=`` also reads as every file of that name."""
    return file_name_of(document) == document


class Names:
    """One run's naming: which document each source (stored path) is shown as, kept unique in the collection."""

    def __init__(self, store: MilvusStore, *, stored_before: bool = True):
        self._store = store
        self._stored_before = stored_before  # False: the collection was empty when the run started
        self._docs: dict[str, str] = {}  # decided in this run: source → document
        self._stored: dict[str, set[str]] = defaultdict(set)  # what the store holds of a source: its documents
        self._given: dict[str, set[str]] = defaultdict(set)  # the documents this run gave a source's items
        self._by_doc: dict[str, set[str]] = defaultdict(set)  # document → the sources shown under it
        self._by_file: dict[str, set[str]] = defaultdict(set)  # file name → the sources with that file name
        self._asked: set[tuple[str, str]] = set()  # (field, value) looked up in the store already

    def assign(self, items: Sequence[KnowledgeItem]) -> list[KnowledgeItem]:
        """The items, each named by its source's unique document plus its anchor."""
        fresh: dict[str, str] = {}
        for item in items:
            if item.source not in self._docs and item.name:
                fresh.setdefault(item.source, document_of(item.name))
        if fresh:
            self._name(fresh)
        named_items = []
        for item in items:
            document = self._docs.get(item.source)
            if document is None:
                named_items.append(item)
                continue
            self._given[item.source].add(document)
            name = moved_to(item.name, document)
            named_items.append(item if name == item.name else item.model_copy(update={"name": name}))
        return named_items

    def finish(self) -> list[SourceError]:
        """Rewrite the stored items of every source now shown under another document; one warning per source
        whose earlier name changed."""
        earlier = {source: (self._stored[source] | self._given[source]) - {doc} for source, doc in self._docs.items()}
        moved = {source: self._docs[source] for source, names in earlier.items() if names}
        renamed = []
        for source in sorted(self._store.rename(moved) if moved else ()):
            document, was = moved[source], ", ".join(sorted(earlier[source]))
            reason = f"now named {document} (was {was}): another document has the file name {file_name_of(document)}"
            renamed.append(
                SourceError(source=source, reason=reason, kind=SourceErrorKind.RENAMED, severity=Severity.WARNING)
            )
        return renamed

    def _name(self, fresh: dict[str, str]) -> None:
        bases = list(fresh.values())
        self._look_up(
            sources=fresh, documents=[*bases, *map(file_name_of, bases)], file_names=[b for b in bases if _bare(b)]
        )
        order = list(fresh.items())
        self._prefetch(order)
        for i, (source, base) in enumerate(order):
            if source in self._docs:
                continue  # moved under its folder already, for a source named before it in this chunk
            for stored in self._stored.get(source, ()):
                self._by_doc[stored].discard(source)  # its own stored name never stands in its way
            candidates = self._candidates(source, base)
            document = self._first_free(source, candidates)
            if document is None:  # one to look up first: with those of every source still to name whose name is taken
                pending = [(source, base), *((s, b) for s, b in order[i + 1 :] if not self._free(b, s))]
                self._look_up_names(self._candidates_of(pending))
                document = self._first_free(source, candidates) or candidates[-1]
            self._decide(source, document)

    def _prefetch(self, order: list[tuple[str, str]]) -> None:
        """Look up at once what naming these sources will likely need: the names those whose name is taken may take
        instead, and the names a bare name that one of their file names makes ambiguous may move to."""
        candidates = self._candidates_of((source, base) for source, base in order if not self._free(base, source))
        for source, base in order:
            file_name = file_name_of(base)
            for other in self._by_doc.get(file_name, set()) - {source}:
                candidates += qualified(other, file_name)[1:]
        self._look_up_names(candidates)

    def _candidates_of(self, sources: Iterable[tuple[str, str]]) -> list[str]:
        return [c for source, base in sources for c in self._candidates(source, base)]

    def _look_up_names(self, candidates: list[str]) -> None:
        """Learn who holds these names: as documents, and the bare ones as file names too."""
        self._look_up(documents=candidates, file_names=[c for c in candidates if _bare(c)])

    def _candidates(self, source: str, base: str) -> list[str]:
        return [*sorted(self._stored.get(source, ())), *qualified(source, base)]

    def _decide(self, source: str, document: str) -> None:
        """Show ``source`` as ``document``; a bare name equal to its file name, another's, moves under its folder."""
        self._docs[source] = document
        self._by_doc[document].add(source)
        file_name = file_name_of(document)
        self._by_file[file_name].add(source)
        self._look_up(documents=[file_name])
        for other in sorted(self._by_doc.get(file_name, set()) - {source}):
            self._by_doc[file_name].discard(other)
            candidates = qualified(other, file_name)[1:]
            self._look_up(documents=candidates)
            self._docs[other] = self._first_free(other, candidates) or candidates[-1]
            self._by_doc[self._docs[other]].add(other)

    def _first_free(self, source: str, candidates: Iterable[str]) -> str | None:
        """The first candidate no other source's name or file name stands in the way of; None when one must be
        looked up before it can be told."""
        for document in candidates:
            if ("document", document) not in self._asked or (_bare(document) and ("file", document) not in self._asked):
                return None
            if self._free(document, source):
                return document
        return None

    def _free(self, document: str, source: str) -> bool:
        if self._by_doc.get(document, set()) - {source}:
            return False
        return not (_bare(document) and self._by_file.get(document, set()) - {source})

    def _look_up(
        self, *, sources: Iterable[str] = (), documents: Iterable[str] = (), file_names: Iterable[str] = ()
    ) -> None:
        """Learn what the store holds under these stored paths, documents and file names (each asked once)."""
        wanted = {
            field: sorted({v for v in values if (field, v) not in self._asked})
            for field, values in (("source", sources), ("document", documents), ("file", file_names))
        }
        if not any(wanted.values()):
            return
        for field, values in wanted.items():
            self._asked.update((field, v) for v in values)
        if not self._stored_before:  # the store holds only what this run named itself
            return
        rows = self._store.documents(sources=wanted["source"], documents=wanted["document"], file_names=wanted["file"])
        for source, document in rows:
            if source in self._docs:
                continue  # named in this run: what the store holds of it is rewritten at the end
            self._stored[source].add(document)
            self._by_doc[document].add(source)
            self._by_file[file_name_of(document)].add(source)
