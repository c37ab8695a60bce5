"""The ``/api`` routes, one module per concern; every route asks for the bearer token when one is set."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from . import ingest, items, search
from .deps import authorize


def api_router() -> APIRouter:
    api = APIRouter(dependencies=[Depends(authorize)])
    for module in (search, ingest, items):
        api.include_router(module.router)
    return api
