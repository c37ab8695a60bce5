"""A collection as a mirror of the sources named: what a prune may touch, what it would delete, the safety valve.

``rag ingest SOURCES --prune`` ingests as usual (new files encoded, changed ones replaced, the new versions written
before the old are deleted) and then deletes the stored items of files that are gone. Its scope is the sources
named, by the absolute ``source`` every item stores: the folders (every stored path under them) and the files,
manifests and URLs (exactly those stored paths). Items of other folders, of uploads, or listed by another manifest
are never touched. Deleting comes last, after every new item is written, so a run killed at any moment leaves each
file at its old state or its new one, and the next run converges.

A file counts as gone when this run read nothing of it: no item, and no error that says it is still there but
unreadable (a broken file keeps its older items, as a plain ingest keeps them). The stored sources in scope are
listed once before the run, one pass over the rows per folder named (``MilvusStore.sources_within``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from connectors.milvus.store import MilvusStore
from rag.errors import RagError
from rag.items import KnowledgeItem, Severity, SourceError

from .ledger import Ledger, SourceResult
from .report import IngestReport

#: More than this share of the scoped items deleted by one prune needs ``yes``.
MAX_DELETE_SHARE = 0.5
_ID_BATCH = 1_000


class PruneRefusedError(RagError, RuntimeError):
    """A prune that would delete too much (nothing read, or more than half of the items in scope); nothing was
    deleted. ``deleting`` and ``scoped`` count items."""

    def __init__(self, message: str, deleting: int, scoped: int) -> None:
        super().__init__(message)
        self.deleting = deleting
        self.scoped = scoped


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class Scope:
    """What a prune of these sources may touch: stored paths under ``folders``, and the stored paths ``files``."""

    folders: tuple[str, ...]
    files: tuple[str, ...]

    @classmethod
    def of(cls, sources: Sequence[str | os.PathLike[str]]) -> Scope:
        """The scope of the sources as given on the command line: each local path both as written (absolute) and
        resolved (readers store one or the other); URLs as they are."""
        folders: list[str] = []
        files: list[str] = []
        for given in (os.fspath(source) for source in sources):
            if _is_url(given):
                files.append(given)
                continue
            path = Path(given).expanduser()
            forms = list(dict.fromkeys([str(path.absolute()), str(path.resolve())]))
            (folders if path.is_dir() else files).extend(forms)
        return cls(tuple(dict.fromkeys(folders)), tuple(dict.fromkeys(files)))

    def covers(self, source: str) -> bool:
        return source in self.files or any(source.startswith(folder.rstrip("/") + "/") for folder in self.folders)


@dataclass
class Stored:
    """The stored items in a scope, by stored path (listed once, before the run)."""

    scope: Scope
    ids: dict[str, set[str]]

    @classmethod
    def list(cls, store: MilvusStore, scope: Scope) -> Stored:
        return cls(scope, store.sources_within(scope.folders, scope.files))

    @property
    def count(self) -> int:
        return sum(map(len, self.ids.values()))

    def missing(self) -> dict[str, set[str]]:
        """The stored local paths whose file no longer exists (known before reading anything)."""
        return {source: ids for source, ids in self.ids.items() if not _is_url(source) and not Path(source).exists()}


@dataclass
class Seen:
    """What a run read, source by source: pass the results through :meth:`watch`."""

    items: dict[str, set[str]] = field(default_factory=dict)  # source → the ids it gave
    broken: set[str] = field(default_factory=set)  # sources of errors (a file there, but unreadable), and their files

    def watch(self, results: Iterable[SourceResult]) -> Iterator[SourceResult]:
        for result in results:
            if isinstance(result, KnowledgeItem):
                self.items.setdefault(result.source, set()).add(result.id)
            elif isinstance(result, SourceError) and result.severity is Severity.ERROR:
                self.failed(result.source)
            yield result

    def failed(self, where: str) -> None:
        """An error about ``where``: its file, page or line is there but could not be read."""
        self.broken.update((where, where.split("#", 1)[0], where.rsplit(":", 1)[0]))

    def stale(self, stored: Stored) -> dict[str, set[str]]:
        """The stored ids of sources read without an error that the run no longer gave: rows a manifest dropped,
        older versions of changed files (the ledger deletes most of those itself)."""
        found = {
            source: ids - self.items[source]
            for source, ids in stored.ids.items()
            if source in self.items and source not in self.broken
        }
        return {source: ids for source, ids in found.items() if ids}

    def read(self, source: str) -> bool:
        """Whether this run read ``source``: an item of it, or an error about it or a part of it."""
        return source in self.items or source in self.broken


def gone(stored: Stored, seen: Seen) -> dict[str, set[str]]:
    """The stored sources in scope that the run did not read: their files are gone (or no longer read)."""
    return {source: ids for source, ids in stored.ids.items() if not seen.read(source)}


def check(deleting: int, scoped: int, *, found_items: bool, yes: bool, sources: Sequence[str]) -> None:
    """The safety valve (rsync's ``--max-delete``): refuse a prune when the sources gave no item at all (an
    unmounted disk, a typo), or when it would delete more than half of the items in scope; ``yes`` lets it go."""
    if yes or deleting == 0:
        return
    named = ", ".join(map(str, sources))
    if not found_items:
        raise PruneRefusedError.worded(
            f"refusing to prune: {named} gave no items, so all {deleting} stored item(s) under it would be deleted "
            "(an unmounted disk or a mistyped path?). Nothing was deleted; {yes} if that is what you want",
            deleting,
            scoped,
        )
    if deleting > MAX_DELETE_SHARE * scoped:
        raise PruneRefusedError.worded(
            f"refusing to prune: {deleting} of the {scoped} stored item(s) under {named} would be deleted, more than "
            f"{MAX_DELETE_SHARE:.0%}. Nothing was deleted; check the paths{{dry_run}}, or {{yes}}",
            deleting,
            scoped,
        )


def prune(store: MilvusStore, doomed: dict[str, set[str]]) -> int:
    """Delete the items of the sources gone; returns how many. Call after every new item is written."""
    ids = [item_id for source in sorted(doomed) for item_id in sorted(doomed[source])]
    return store.delete(ids=ids) if ids else 0


def content_key(item: KnowledgeItem) -> tuple[str, str] | None:
    """What an item's vectors are computed from: its image bytes (by digest) and its text. None when the image's
    bytes are not known (its vectors cannot be told equal)."""
    if item.image is not None and not item.image.sha256:
        return None
    picture = f"image:{item.image.sha256}" if item.image is not None else "text"
    return picture, hashlib.sha256(item.text.encode("utf-8")).hexdigest()


class Donors:
    """Stored items whose vectors a new item of the same content (image bytes and text) takes instead of being
    encoded: the items of files gone from disk, so a file renamed or moved is not encoded again. Its new items get
    the new path, name and anchors; the old ones are pruned once the run has written the new."""

    def __init__(self, store: MilvusStore, ids: Iterable[str]) -> None:
        self._vectors: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # donor id → its content
        self._taken: set[tuple[str, str]] = set()  # contents a new item took
        wanted = sorted(ids)
        for start in range(0, len(wanted), _ID_BATCH):
            for item, fused, image in store.iter_vectors(filter={"id": wanted[start : start + _ID_BATCH]}):
                if (key := content_key(item)) is not None:
                    self._vectors.setdefault(key, (fused, image if image is not None else fused))
                    self._keys[item.id] = key

    def __len__(self) -> int:
        return len(self._vectors)

    def rehomed(self, item_id: str) -> bool:
        """Whether a new item took this donor's content: its deletion loses nothing."""
        key = self._keys.get(item_id)
        return key is not None and key in self._taken

    def give(self, items: list[KnowledgeItem], ledger: Ledger) -> list[KnowledgeItem]:
        """Write the items a donor has vectors for (not encoded); returns the others, to encode."""
        taken: list[KnowledgeItem] = []
        rest: list[KnowledgeItem] = []
        for item in items:
            key = content_key(item)
            (taken if key is not None and key in self._vectors else rest).append(item)
        if taken:
            keys = [content_key(item) for item in taken]
            self._taken.update(key for key in keys if key is not None)
            vectors = [self._vectors[key] for key in keys if key is not None]
            ledger.write(taken, np.stack([v[0] for v in vectors]), np.stack([v[1] for v in vectors]), encoded=False)
        return rest


class Pruning:
    """One prune: list what is stored in scope, pass the run's results through :meth:`watch`, then
    :meth:`finish` once every new item is written. ``yes`` lets it past the safety valve."""

    def __init__(
        self,
        store: MilvusStore | None,
        sources: Sequence[str | os.PathLike[str]],
        *,
        yes: bool = False,
        scope: Scope | None = None,
    ):
        scope = scope or Scope.of(sources)
        self.stored = Stored.list(store, scope) if store is not None else Stored(scope, {})
        self.sources = [os.fspath(source) for source in sources]
        self.yes = yes
        self.seen = Seen()
        self._donors: Donors | None = None

    def watch(self, results: Iterable[SourceResult]) -> Iterator[SourceResult]:
        return self.seen.watch(results)

    def leave(self, sources: Iterable[str]) -> None:
        """Take these stored sources out of scope (another tenant's): this prune neither deletes nor lends them."""
        for source in sources:
            self.stored.ids.pop(source, None)

    def donors(self, store: MilvusStore) -> Donors:
        """The vectors of the items of files gone from disk, for their renamed or moved copies to take."""
        self._donors = Donors(store, [item_id for ids in self.stored.missing().values() for item_id in ids])
        return self._donors

    def check_before(self, found_items: bool) -> None:
        """The safety valve before anything is read or written: sources that give no item at all would empty the
        scope. (What else a run deletes is weighed by :meth:`finish`, renames set apart.)"""
        if not found_items:
            check(self.stored.count, self.stored.count, found_items=False, yes=self.yes, sources=self.sources)

    def finish(self, store: MilvusStore, report: IngestReport) -> int:
        """Delete the items of the sources this run did not read (counted in ``report.removed``); returns how many.
        Raises :class:`PruneRefusedError` (deleting nothing) past the safety valve."""
        for problem in report.skipped:  # items that failed past reading (an image that would not decode)
            self.seen.failed(problem.source)
        doomed = gone(self.stored, self.seen)
        rehomed = self._donors.rehomed if self._donors is not None else (lambda item_id: False)
        check(
            sum(not rehomed(item_id) for ids in doomed.values() for item_id in ids),
            self.stored.count,
            found_items=bool(self.seen.items),
            yes=self.yes,
            sources=self.sources,
        )
        for source, ids in self.seen.stale(self.stored).items():  # replacements, not losses: outside the valve
            doomed[source] = doomed.get(source, set()) | ids
        deleted = prune(store, doomed)
        report.removed += deleted
        return deleted


@dataclass
class Preview:
    """What a prune would do, by source (``--dry-run``): nothing is encoded or written to find it out."""

    added: list[str] = field(default_factory=list)  # sources with nothing stored yet
    replaced: list[str] = field(default_factory=list)  # sources whose stored items differ from what they give now
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # stored sources in scope that are gone
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (new source, the gone one whose vectors it takes)
    items_deleted: int = 0
    problems: list[SourceError] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "dry_run": True,
            "added": self.added,
            "replaced": self.replaced,
            "unchanged": len(self.unchanged),
            "deleted": self.deleted,
            "renamed": [{"from": old, "to": new} for new, old in self.renamed],
            "items_deleted": self.items_deleted,
        }


def preview(results: Iterable[SourceResult], store: MilvusStore | None, stored: Stored) -> Preview:
    """Read the sources (no encoding) and compare what they give with what is stored."""
    seen, produced, outcome = Seen(), dict[str, set[str]](), Preview()
    contents: dict[str, set[tuple[str, str] | None]] = {}
    for result in seen.watch(results):
        if isinstance(result, KnowledgeItem):
            produced.setdefault(result.source, set()).add(result.id)
            contents.setdefault(result.source, set()).add(content_key(result))
        else:
            outcome.problems.append(result)
    outside = [source for source in produced if source not in stored.ids]
    before = {**stored.ids, **(store.ids_by_source(outside) if store is not None and outside else {})}
    for source, ids in produced.items():
        was = before.get(source, set())
        (outcome.added if not was else outcome.unchanged if was == ids else outcome.replaced).append(source)
    doomed = gone(stored, seen)
    outcome.items_deleted = sum(map(len, doomed.values()))
    moved = _moved(store, doomed, {source: contents[source] for source in outcome.added}) if store is not None else {}
    outcome.renamed = sorted(moved.items())
    outcome.added = [source for source in outcome.added if source not in moved]
    outcome.deleted = sorted(set(doomed) - set(moved.values()))
    return outcome


def _moved(
    store: MilvusStore, doomed: dict[str, set[str]], added: dict[str, set[tuple[str, str] | None]]
) -> dict[str, str]:
    """New source → the gone source whose stored items hold all of its content (a rename or a move)."""
    holder: dict[tuple[str, str] | None, str] = {}
    for item in store.get([item_id for ids in doomed.values() for item_id in ids]):
        holder.setdefault(content_key(item), item.source)
    moved: dict[str, str] = {}
    for source, keys in added.items():
        origins = {holder.get(key) for key in keys}
        origin = origins.pop() if len(origins) == 1 else None
        if origin is not None and None not in keys:
            moved[source] = origin
    return moved
