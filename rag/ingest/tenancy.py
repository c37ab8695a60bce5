"""A source belongs to one tenant: before items are written for a tenant, none of the same files may be another's.

Item ids and documents are derived from the source's path, not its tenant, so ingesting a file another tenant
has would replace that tenant's items (or move them). ``foreign_items`` counts what would be touched, for the
caller to refuse; a collection with one tenant only is answered by one count. ``rag ingest --watch`` meets such
files batch by batch: ``foreign_sources`` names them, ``kept_out`` reports them instead of reading them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from connectors.milvus import MilvusStore
from rag.access.tenants import TENANT_KEY
from rag.items import KnowledgeItem, SourceError

from .ledger import SourceResult

_BATCH = 1_000


def foreign_items(store: MilvusStore, sources: Sequence[str], tenant: str) -> int:
    """How many stored items of these sources (files, and everything under folders) belong to another tenant."""
    if store.count({TENANT_KEY: {"!=": tenant}}) == 0:
        return 0
    local = [Path(s).resolve() for s in sources if not s.startswith(("http://", "https://"))]
    folders = [str(p) for p in local if p.is_dir()]
    files = [str(p) for p in local if not p.is_dir()]
    ids = sorted(set().union(*store.sources_within(folders, files).values()))
    return sum(
        store.count({"id": ids[start : start + _BATCH], TENANT_KEY: {"!=": tenant}})
        for start in range(0, len(ids), _BATCH)
    )


def foreign_sources(store: MilvusStore, stored: Mapping[str, set[str]], tenant: str) -> set[str]:
    """The stored paths among ``stored`` (stored path → its ids) holding an item of another tenant than ``tenant``."""
    if not stored or store.count({TENANT_KEY: {"!=": tenant}}) == 0:
        return set()
    ids = sorted(set().union(*stored.values()))
    return {
        item.source
        for start in range(0, len(ids), _BATCH)
        for item in store.get(ids[start : start + _BATCH])
        if item.tenant != tenant
    }


def kept_out(results: Iterable[SourceResult], foreign: Collection[str], tenant: str) -> Iterator[SourceResult]:
    """``results`` without the items of the ``foreign`` sources: one error for each such source instead (its stored
    items, another tenant's, stay as they are)."""
    told: set[str] = set()
    for result in results:
        if isinstance(result, KnowledgeItem) and result.source in foreign:
            if result.source not in told:
                told.add(result.source)
                yield SourceError(
                    source=result.source,
                    reason=f"its stored items belong to another tenant than {tenant!r}: left as they are",
                )
        else:
            yield result
