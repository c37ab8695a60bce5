"""The ``/api`` routes, one module per concern; the auth middleware checks each request's token first."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..auth import tokens_router
from . import documents, ingest, items, search
from .deps import bearer


def api_router() -> APIRouter:
    api = APIRouter(dependencies=[Depends(bearer)])  # documents the header; ``auth`` checks it
    for module in (search, ingest, items, documents):
        api.include_router(module.router)
    api.include_router(tokens_router)
    return api
