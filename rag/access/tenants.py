"""Tenants: who an item belongs to (``KnowledgeItem.tenant``, the store's partition key) and what a request sees.

The server adds its token's tenant to every filter it searches, counts and deletes with, whatever the request
says (``within``), and tags what a tenant's token ingests with that tenant (``tagged``); ``rag ingest --tenant``
tags the same way. A token without a tenant (an admin) sees every tenant and may filter on ``tenant`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from rag.errors import RagError
from rag.items import DEFAULT_TENANT, KnowledgeItem

from .tokens import check_tenant

#: The filter key of the store's ``tenant`` field (``connectors.milvus.schema.TENANT``).
TENANT_KEY = "tenant"
_T = TypeVar("_T")


class TenantError(RagError, PermissionError):
    """A request of one tenant that names another (in a filter, or as the tenant to write to)."""


def within(filters: Mapping[str, Any] | None, tenant: str | None) -> dict[str, Any] | None:
    """``filters`` (as ``parse_filters`` returns them) limited to ``tenant``; unchanged when ``tenant`` is None.

    Filters that name a tenant other than ``tenant`` (or any condition on it but equality with it) raise a
    ``TenantError``: a request can neither widen its tenant nor, by naming another, act on its own by mistake."""
    if tenant is None:
        return dict(filters) if filters is not None else None
    named = (filters or {}).get(TENANT_KEY, tenant)
    if named != tenant:
        raise TenantError(f"this token sees tenant {tenant!r} only: leave the tenant out of the filter")
    return {**(filters or {}), TENANT_KEY: tenant}


def tagged(results: Iterable[_T], tenant: str | None) -> Iterator[_T]:
    """``results`` (items and errors, as sources yield them) with every item belonging to ``tenant``."""
    if tenant is None or tenant == DEFAULT_TENANT:
        yield from results
        return
    check_tenant(tenant)
    for result in results:
        if isinstance(result, KnowledgeItem):
            yield result.model_copy(update={"tenant": tenant})
        else:
            yield result


def sees(item: KnowledgeItem, tenant: str | None) -> bool:
    """Whether a request of ``tenant`` (None: every tenant) may see ``item``."""
    return tenant is None or item.tenant == tenant
