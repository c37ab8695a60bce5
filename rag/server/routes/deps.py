"""What the routes share: the service, the settings, the token check, and reading an upload within its limit."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException

from rag.settings import Settings

from ..service import Service, UploadError

_bearer = HTTPBearer(auto_error=False, description="Needed when the server has a token (RAG_SERVER_TOKEN / --token).")


def _service(request: Request) -> Service:
    """The service; 503 (``not_ready``) while the server starts."""
    return request.app.state.startup.require()


def _settings(request: Request) -> Settings:
    return request.app.state.settings


ServiceDep = Annotated[Service, Depends(_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def authorize(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if settings.server_token is None:
        return
    token = settings.server_token.get_secret_value()
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this server needs a bearer token: send the header 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def read_upload(upload: StarletteUpload, max_bytes: int) -> bytes:
    """The upload's bytes; an ``UploadError`` (413) past ``max_bytes``."""
    if upload.size is not None and upload.size > max_bytes:
        raise UploadError(f"{upload.filename!r} is {upload.size} bytes, over the {max_bytes}-byte limit", 413)
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadError(f"{upload.filename!r} is over the {max_bytes}-byte limit", 413)
    return data
