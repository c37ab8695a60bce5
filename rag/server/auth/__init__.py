"""Access to the server: scoped tokens checked before any route, tenants, and the audit log (``rag.access``)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from fastapi import FastAPI
from pydantic import SecretStr

from rag.access import AuditLog, Principal, TokenStore
from rag.settings import Settings

from ..jobs import IngestJob
from .middleware import SERVER_TOKEN, Access, AuthMiddleware
from .routes import AuditDep, PrincipalDep, principal
from .routes import router as tokens_router

logger = logging.getLogger(__name__)

__all__ = [
    "SERVER_TOKEN",
    "Access",
    "AuditDep",
    "PrincipalDep",
    "audited_ingest",
    "guard_open_bind",
    "install",
    "principal",
    "tokens_router",
]


def owner(who: Principal) -> str | None:
    """Who owns what a request starts (a kept conversation): its token, and the tenant it acts in."""
    return None if who.name is None else f"{who.name}@{who.tenant or ''}"


def install(app: FastAPI, settings: Settings) -> None:
    """Check tokens on every ``/api`` route of ``app`` and keep its audit log (``app.state.access``, ``.audit``).

    Call it after the other middleware is added: the check then runs first, before any body is read."""
    app.state.access = Access(settings)
    app.state.audit = AuditLog(settings.data_dir, reads=settings.server_audit_reads)
    app.add_middleware(AuthMiddleware, access=app.state.access)


def guard_open_bind(settings: Settings, host: str, url: str, *, exposed: bool) -> Settings:
    """``settings`` with a token generated for this run when ``host`` is ``exposed`` (not loopback) and no token
    is configured (printed once with ``url``, as Jupyter does); ``--no-auth`` (``server_auth`` off) serves openly
    with a warning."""
    if not settings.server_auth:
        logger.warning("serving on %s with --no-auth: anyone who can reach it can read, add and delete items", host)
        return settings
    if not exposed or settings.server_token is not None or TokenStore(settings.data_dir).configured():
        return settings
    token = secrets.token_urlsafe(32)
    logger.warning(
        "serving on %s, so a token is needed (none configured: `rag tokens add` makes lasting ones). "
        "This one is for this run only; open the page with it:\n    %s#token=%s",
        host,
        url,
        token,
    )
    return settings.model_copy(update={"server_token": SecretStr(token)})


def audited_ingest(audit: AuditLog, who: Principal, files: list[str]) -> Callable[[IngestJob], None]:
    """What writes an upload's ingest job to the audit log once it is finished: its files and counts."""

    def record(job: IngestJob) -> None:
        counts = job.model_dump(include={"added", "unchanged", "replaced", "removed", "skipped"})
        audit.record("ingest", who, files=files, job=job.id, status=job.status.value, error=job.error, **counts)

    return record
