"""What the routes share: the service, the settings, the bearer header's documentation, and reading an upload
within its limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.datastructures import UploadFile as StarletteUpload

from rag.settings import Settings

from ..service import Service, UploadError

#: Only documents the header (``rag.server.auth`` checks it before any route runs).
bearer = HTTPBearer(
    auto_error=False, description="Needed when the server has tokens (`rag tokens add`, RAG_SERVER_TOKEN / --token)."
)


def _service(request: Request) -> Service:
    """The service; 503 (``not_ready``) while the server starts."""
    return request.app.state.startup.require()


def _settings(request: Request) -> Settings:
    return request.app.state.settings


ServiceDep = Annotated[Service, Depends(_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def read_upload(upload: StarletteUpload, max_bytes: int) -> bytes:
    """The upload's bytes; an ``UploadError`` (413) past ``max_bytes``."""
    if upload.size is not None and upload.size > max_bytes:
        raise UploadError(f"{upload.filename!r} is {upload.size} bytes, over the {max_bytes}-byte limit", 413)
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadError(f"{upload.filename!r} is over the {max_bytes}-byte limit", 413)
    return data
