"""``/api/stats``, ``/api/items/{id}/image`` and ``DELETE /api/items``: what the collection holds, and taking
items out of it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from rag.access import Scope

from ..auth import AuditDep, PrincipalDep
from ..models import DeletedItems, ErrorBody, ServerStats
from ..rerankers import allowed_rerankers, default_label
from .deps import ServiceDep, SettingsDep

router = APIRouter()


@router.get("/stats", tags=["service"])
def stats(service: ServiceDep, settings: SettingsDep, who: PrincipalDep) -> ServerStats:
    """Item count, vector size and encoder of the collection, and the LLM in use."""
    llm = service.llm.metadata.model_name if service.llm is not None else None
    data = service.stats(who.tenant).model_dump()
    if not settings.server_show_paths:
        data["uri"] = None
    runtime = service.encoder.runtime.to_dict()
    writer = who.scope.allows(Scope.WRITE)
    access = {"scope": who.scope.value, "tenant": who.tenant, "can_upload": writer, "can_delete": writer}
    rerankers = {"reranker": default_label(settings), "rerankers": list(allowed_rerankers(settings))}
    return ServerStats(**data, llm=llm, encoder_runtime=runtime, top_k=settings.top_k, **rerankers, **access)


@router.delete("/items", tags=["items"], responses={400: {"model": ErrorBody}})
def delete_items(
    service: ServiceDep,
    who: PrincipalDep,
    audit: AuditDep,
    filters: Annotated[
        list[str],
        Query(
            alias="filter",
            description="Which items: key=value pairs or a JSON object, as search's filter (source=notes.md, "
            "id=<item id>); repeat it for more pairs. Required.",
        ),
    ],
) -> DeletedItems:
    """Delete the items the filter matches (the files they came from are kept); returns how many were deleted.
    Needs the same authorisation as ingestion."""
    deleted = service.delete(filters, who.tenant)
    audit.record("delete", who, filter=filters, deleted=deleted)
    return DeletedItems(deleted=deleted)


@router.get(
    "/items/{item_id}/image",
    tags=["items"],
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, 404: {"model": ErrorBody}},
)
def item_image(service: ServiceDep, who: PrincipalDep, item_id: str) -> FileResponse:
    """The image of a stored item, found by the item's id (never by a path)."""
    path, media_type = service.image_file(item_id, who.tenant)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})
