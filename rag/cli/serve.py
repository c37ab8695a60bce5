"""``rag serve``: the web page and the HTTP API over one collection."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from rag.cli.common import (
    CollectionOpt,
    EncoderOpt,
    UriOpt,
    VerboseOpt,
    WeightsOpt,
    app,
    fail,
    require_collection,
    said,
    settings_from,
)


@app.command()
def serve(
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind; loopback by default [RAG_SERVER_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [RAG_SERVER_PORT].")] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token every /api route requires [RAG_SERVER_TOKEN, preferred].")
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve every /api route without a token, even on a non-loopback address or with tokens configured "
            "(a warning says so) [RAG_SERVER_AUTH=false].",
        ),
    ] = False,
    audit_reads: Annotated[
        bool,
        typer.Option("--audit-reads", help="Write searches and answers to the audit log too [RAG_SERVER_AUDIT_READS]."),
    ] = False,
    show_paths: Annotated[
        bool,
        typer.Option(
            "--show-paths",
            help="Show clients this machine's paths (sources, image files) and the Milvus URI [RAG_SERVER_SHOW_PATHS].",
        ),
    ] = False,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the web page and the HTTP API (search, ask, ingest, stats, images) for one existing collection.

    Once tokens exist (`rag tokens add`, RAG_SERVER_TOKEN), every /api request needs one. On an address other
    than loopback with none, a token is generated for the run and printed with the URL to open."""
    settings = settings_from(
        collection=collection,
        milvus_uri=uri,
        server_host=host,
        server_port=port,
        server_token=token,
        server_show_paths=show_paths or None,
        server_auth=False if no_auth else None,
        server_audit_reads=audit_reads or None,
        encoder=encoder,
        weights=weights,
    )
    require_collection(settings, writable=True)  # the server writes: uploads, deletes
    try:
        from rag.server import serve as run_server
        from rag.server.app import PortUnavailableError
    except ImportError as e:
        raise fail(str(e)) from e
    logging.getLogger("rag").setLevel(settings.log_level)
    try:
        run_server(settings)
    except PortUnavailableError as e:
        raise fail(e) from e
    except Exception as e:  # what stopped the start (logged with its reason): a model, a collection, a store
        raise fail(f"the server could not start: {said(e)}") from e
