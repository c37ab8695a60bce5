"""``/api/stats`` and ``/api/items/{id}/image``: what the collection holds."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ..models import ErrorBody, ServerStats
from .deps import ServiceDep, SettingsDep

router = APIRouter()


@router.get("/stats", tags=["service"])
def stats(service: ServiceDep, settings: SettingsDep) -> ServerStats:
    """Item count, vector size and encoder of the collection, and the LLM in use."""
    llm = service.llm.metadata.model_name if service.llm is not None else None
    data = service.stats().model_dump()
    if not settings.server_show_paths:
        data["uri"] = None
    return ServerStats(**data, llm=llm, encoder_runtime=service.encoder.runtime.to_dict(), top_k=settings.top_k)


@router.get(
    "/items/{item_id}/image",
    tags=["items"],
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, 404: {"model": ErrorBody}},
)
def item_image(service: ServiceDep, item_id: str) -> FileResponse:
    """The image of a stored item, found by the item's id (never by a path)."""
    path, media_type = service.image_file(item_id)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})
