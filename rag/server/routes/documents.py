"""``/api/items/{id}/source``: the document a stored item came from, so that a result opens where it points.

The file is found by the item's id, never by a path from the request, and only among the caller's tenant's
items: it is the file the item was read from (``KnowledgeItem.source``), and only while it is a file this server
can read. A link adds the item's anchor less ``&chunk=N`` (``rag.items.link_fragment``): ``#install``,
``#page=7``, ``#line=4,9``. Pages and drawings (HTML, SVG, XML) are served under ``Content-Security-Policy:
sandbox``, so a document's scripts never run with this server's origin.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from rag.access.tenants import sees

from ..auth import PrincipalDep
from ..models import ErrorBody
from ..service import ImageNotFoundError
from .deps import ServiceDep

router = APIRouter()

#: Types a browser would run scripts in: served sandboxed.
_ACTIVE = ("text/html", "image/svg+xml", "application/xhtml+xml", "application/xml", "text/xml")
#: Text types a browser would download rather than show: shown as plain text.
_SHOWN_AS_TEXT = (".md", ".markdown", ".rst", ".rest", ".csv", ".jsonl", ".ndjson")


@router.get(
    "/items/{item_id}/source",
    tags=["items"],
    response_class=FileResponse,
    responses={200: {"content": {"*/*": {}}}, 404: {"model": ErrorBody}},
)
def item_source(service: ServiceDep, who: PrincipalDep, item_id: str) -> FileResponse:
    """The document a stored item came from, found by the item's id (never by a path); open it at the item's
    anchor, e.g. ``/api/items/{id}/source#install``."""
    found = [item for item in service.store.get([item_id]) if sees(item, who.tenant)]
    if not found:
        raise ImageNotFoundError(f"collection {service.settings.collection!r} has no item {item_id!r}")
    path = Path(found[0].source)
    if not path.is_absolute() or not path.is_file():
        raise ImageNotFoundError(f"the document of item {item_id!r} is not a file this server keeps")
    media_type = mimetypes.guess_type(path.name)[0] or "text/plain"
    if path.suffix.lower() in _SHOWN_AS_TEXT or (media_type == "text/plain" and not path.suffix):
        media_type = "text/plain; charset=utf-8"
    headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
    if media_type.split(";")[0] in _ACTIVE:
        headers["Content-Security-Policy"] = "sandbox"
    return FileResponse(path, media_type=media_type, headers=headers, content_disposition_type="inline")
