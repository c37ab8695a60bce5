"""A source belongs to one tenant: before items are written for a tenant, none of the same files may be another's.

Item ids and documents are derived from the source's path, not its tenant, so ingesting a file another tenant
has would replace that tenant's items (or move them). ``foreign_items`` counts what would be touched, for the
caller to refuse; a collection with one tenant only is answered by one count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from connectors.milvus import MilvusStore
from rag.access.tenants import TENANT_KEY

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
