"""``rag tokens``: the scoped tokens of ``rag serve`` (add, list, revoke), stored hashed in RAG_DATA_DIR."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rag.access import AuditLog, Scope, TokenError, TokenStore
from rag.cli.common import JsonOpt, VerboseOpt, app, console, fail, settings_from

tokens_app = typer.Typer(
    help="Tokens for `rag serve`: read (search, ask, chat, view), write (also ingest, delete), admin (also tokens). "
    "Kept as salted hashes in RAG_DATA_DIR; a change counts at once, without restarting the server.",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")

DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Where the tokens are kept [RAG_DATA_DIR].")]


def _store(data_dir: str | None) -> tuple[TokenStore, AuditLog]:
    settings = settings_from(data_dir=data_dir)
    return TokenStore(settings.data_dir), AuditLog(settings.data_dir)


@tokens_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the token's holder (letters, digits, '.', '_', '-').")],
    scope: Annotated[Scope, typer.Option("--scope", help="What the token may do.", case_sensitive=False)],
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="The only tenant the token sees and writes to; none: every tenant."),
    ] = None,
    data_dir: DataDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Create a token and print it once, alone on the last line: it cannot be shown again."""
    store, audit = _store(data_dir)
    try:
        record, token = store.add(name, scope, tenant)
    except TokenError as e:
        raise fail(str(e)) from e
    audit.record("token_add", None, name=record.name, scope=record.scope.value, token_tenant=record.tenant)
    where = f", tenant {record.tenant}" if record.tenant else ", every tenant"
    console.print(f"token {record.name!r} added (scope {record.scope.value}{where}); it is shown this once:")
    typer.echo(token)


@tokens_app.command("list")
def list_tokens(data_dir: DataDirOpt = None, json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Every token: name, scope, tenant, creation and last use (never the token itself)."""
    store, _ = _store(data_dir)
    try:
        listing = store.listing()
    except TokenError as e:
        raise fail(str(e)) from e
    if json_out:
        typer.echo(json.dumps(listing, indent=2))
        return
    if not listing:
        console.print("no tokens: `rag tokens add NAME --scope read` makes one")
        return
    table = Table("name", "scope", "tenant", "created", "last used")
    for shown in listing:
        table.add_row(shown["name"], shown["scope"], shown["tenant"] or "(all)", shown["created"], shown["last_used"])
    Console().print(table)  # the listing is the output: stdout


@tokens_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The token's name (`rag tokens list`).")],
    data_dir: DataDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Revoke a token: a running server refuses it from its next request."""
    store, audit = _store(data_dir)
    try:
        record = store.revoke(name)
    except TokenError as e:
        raise fail(str(e)) from e
    audit.record("token_revoke", None, name=record.name, scope=record.scope.value, token_tenant=record.tenant)
    console.print(f"token {record.name!r} revoked")
