"""``/api/tokens``: the tokens of ``rag tokens``, managed over the API by an admin token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field

from rag.access import AuditLog, Principal, Scope, TokenStore
from rag.access.tokens import ANONYMOUS

from ..models import ErrorBody

router = APIRouter(prefix="/tokens", tags=["tokens"], responses={403: {"model": ErrorBody}})


def principal(request: Request) -> Principal:
    """Who the request acts as (resolved by the auth middleware before the route runs)."""
    return getattr(request.state, "principal", ANONYMOUS)


def audit_log(request: Request) -> AuditLog:
    return request.app.state.audit


def _tokens(request: Request) -> TokenStore:
    return request.app.state.access.tokens


PrincipalDep = Annotated[Principal, Depends(principal)]
AuditDep = Annotated[AuditLog, Depends(audit_log)]
TokensDep = Annotated[TokenStore, Depends(_tokens)]


class TokenInfo(BaseModel):
    name: str
    scope: Scope
    tenant: str | None = Field(default=None, description="The only tenant the token sees; none: every tenant.")
    created: str
    last_used: str | None = Field(default=None, description="Written at most once a minute.")


class TokenRequest(BaseModel):
    name: str = Field(description="1-64 letters, digits, '.', '_' or '-'.")
    scope: Scope
    tenant: str | None = Field(default=None, description="1-128 letters, digits, '_' or '-'; none: every tenant.")


class NewToken(TokenInfo):
    token: str = Field(description="The token: shown this once, kept only as a salted hash.")


@router.get("")
def list_tokens(tokens: TokensDep) -> list[TokenInfo]:
    """Every token: name, scope, tenant, creation and last use (never the secret)."""
    return [TokenInfo(**shown) for shown in tokens.listing()]


@router.post("", status_code=status.HTTP_201_CREATED, responses={400: {"model": ErrorBody}})
def add_token(request: TokenRequest, tokens: TokensDep, who: PrincipalDep, audit: AuditDep) -> NewToken:
    """A new token; the response holds it, and nothing can show it again."""
    record, token = tokens.add(request.name, request.scope, request.tenant)
    audit.record("token_add", who, name=record.name, scope=record.scope.value, token_tenant=record.tenant)
    return NewToken(**record.shown(None), token=token)


@router.delete("/{name}", responses={400: {"model": ErrorBody}})
def revoke_token(name: str, tokens: TokensDep, who: PrincipalDep, audit: AuditDep) -> TokenInfo:
    """Revoke a token: every request with it fails from now on."""
    record = tokens.revoke(name)
    audit.record("token_revoke", who, name=record.name, scope=record.scope.value, token_tenant=record.tenant)
    return TokenInfo(**record.shown(None))
