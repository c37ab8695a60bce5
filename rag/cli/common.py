"""What every ``rag`` command shares: the Typer app, common options, settings, errors and the openers of the
store and the encoder.

Rich reads ``[word]`` as markup: every string from the user or the data is printed escaped or as ``Text``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from rag.cli.exit_codes import ExitCode
from rag.cli.warm.key import MODEL_SETTINGS
from rag.errors import RagError
from rag.settings import Settings

if TYPE_CHECKING:  # loaded by the commands that need them: `rag --help` starts without them
    from connectors.milvus import ConnectOptions, MilvusStore
    from rag.embeddings.base import Encoder
    from rag.runtime import Purpose, Runtime

T = TypeVar("T")

app = typer.Typer(help="Multimodal RAG over images and text: ingest, search, ask.", no_args_is_help=True)
console = Console(stderr=True)


# Libraries whose INFO lines say nothing a user can act on (faiss, loaded by Milvus Lite, logs each CPU variant
# it fails to find): -v leaves them at WARNING.
_CHATTY = ("faiss.loader",)


def _verbose(value: bool) -> None:
    if value:
        logging.getLogger().setLevel(logging.INFO)
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)


CollectionOpt = Annotated[str | None, typer.Option("--collection", "-c", help="Collection name [RAG_COLLECTION].")]
UriOpt = Annotated[
    str | None, typer.Option("--uri", help="Milvus Lite file (*.db) or http://host:19530 [RAG_MILVUS_URI].")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
EncoderOpt = Annotated[str | None, typer.Option("--encoder", help="visualized-bge, clip or bridgetower [RAG_ENCODER].")]
WeightsOpt = Annotated[
    str | None, typer.Option("--weights", help="Variant, .pth, hub id or model folder [RAG_WEIGHTS].")
]
# Accepted after the command as well as before it (`rag -v search ...`, `rag search ... -v`); it acts through
# its callback, so the commands ignore the value they are passed.
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log progress details.", callback=_verbose, expose_value=False)
]


def settings_from(**overrides: object) -> Settings:
    try:
        given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        return Settings(**given)  # reads the RAG_* environment for the rest
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise fail(problems) from e


#: How ``rag`` spells what library errors tell the caller to set (``rag.errors.PYTHON_NAMES``: Python's way).
CLI_NAMES = {
    "collection": "-c/--collection (RAG_COLLECTION)",
    "uri": "--uri (RAG_MILVUS_URI)",
    "port": "--port (RAG_SERVER_PORT)",
    "yes": "add --yes",
    "dry_run": " (--dry-run lists them)",
    "ocr_all": "--ocr all",
    "ocr_auto": "--ocr auto",
    "ocr_off": "--ocr off",
    "new_name": "-c NEW",
    "replace": "pass --replace",
    "ray_address": "--ray-address",
    "workers": "--workers",
    "gpus_per_worker": "--gpus-per-worker",
    "cpus_per_worker": "--cpus-per-worker",
}


def said(error: BaseException) -> str:
    """The error's message as ``rag`` says it: what to set named by its flags."""
    return error.reworded(**CLI_NAMES) if isinstance(error, RagError) else str(error)


def fail(message: str | BaseException, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    """Print the error (a library error worded with ``rag``'s flags); the exit to raise with ``code``."""
    text = message if isinstance(message, str) else said(message)
    console.print(f"[bold red]error:[/] {escape(text)}")
    return typer.Exit(code)


def store_unavailable(error: Exception, stored: str | None = None) -> typer.Exit:
    """Say in one paragraph that the store cannot be reached (where, what was stored so far, how to go on); exit 5."""
    uri = getattr(error, "uri", None) or "the Milvus store"
    reason = getattr(error, "reason", None) or str(error)
    message = f"the store at {uri} cannot be reached or stopped answering ({reason}). "
    if stored:
        message += f"Stored so far: {stored}. "
    message += (
        "Nothing stored is lost: once the store is back, re-run the same command to go on; it is idempotent (what "
        "is stored stays, and is not stored twice). A Milvus Lite folder's server is started again by the next "
        "command; a Milvus server must be running (docker compose up -d)."
    )
    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(ExitCode.STORE_UNAVAILABLE)


def store_options(settings: Settings) -> ConnectOptions:
    """The store's timeout and Milvus Lite mode from ``settings``; pymilvus's own logs stay quiet unless -v."""
    from connectors.milvus import ConnectOptions, quiet_logs

    quiet_logs(logging.getLogger().isEnabledFor(logging.INFO))
    return ConnectOptions.from_settings(settings)


def open_store(settings: Settings, encoder: Encoder | None = None, create: bool = False) -> MilvusStore:
    from connectors.milvus import EncoderInfo, MilvusStore, StoreError, StoreUnavailableError

    info = EncoderInfo.of(encoder, encoder.name) if encoder is not None else None
    try:
        store = MilvusStore.open(
            settings.milvus_uri,
            settings.collection,
            encoder_info=info,
            create=create,
            token=settings.milvus_token_value,
            options=store_options(settings),
        )
    except StoreUnavailableError as e:
        raise store_unavailable(e) from e
    except StoreError as e:
        raise fail(e) from e
    if create and store.read_only:  # a command that writes, on a collection of an older schema
        store.close()
        raise fail(store.read_only)
    return store


def require_collection(settings: Settings, writable: bool = False) -> None:
    """Stop at once, before any model loads, when the database or the collection is missing (nothing is created),
    or, for a command that writes (``writable``), when the collection has the older schema (``rag migrate``)."""
    from connectors.milvus import StoreError, StoreUnavailableError
    from connectors.milvus import require_collection as require

    try:
        options = store_options(settings)
        token = settings.milvus_token_value
        require(settings.milvus_uri, settings.collection, token=token, options=options, writable=writable)
    except StoreUnavailableError as e:
        raise store_unavailable(e) from e
    except StoreError as e:
        raise fail(e) from e


#: The encoders the warm model process keeps loaded (``rag.cli.warm_host`` sets it), by their settings and runtime;
#: None in any other process, where each command loads its own.
kept_encoders: dict[tuple[str, Runtime], Encoder] | None = None


def load_encoder(
    settings: Settings, purpose: Purpose = "query", expected_items: int | None = None, runtime: Runtime | None = None
) -> Encoder:
    from rag.embeddings import CheckpointError
    from rag.embeddings.registry import load_encoder as load
    from rag.embeddings.registry import runtime_from_settings
    from rag.runtime import RuntimeUnavailableError

    try:
        runtime = runtime or runtime_from_settings(settings, purpose, expected_items)
        if kept_encoders is None:
            return load(settings, runtime)
        key = (settings.model_dump_json(include=set(MODEL_SETTINGS)), replace(runtime, reason=""))
        if key not in kept_encoders:
            kept_encoders[key] = load(settings, runtime)
        return kept_encoders[key]
    except RuntimeUnavailableError as e:
        raise fail(e) from e
    except CheckpointError as e:
        if settings.encoder == "visualized-bge":
            hint = (
                "Point RAG_WEIGHTS at a local Visualized-BGE .pth (with RAG_TEXT_MODEL and RAG_VISION_CONFIG "
                "for a checkpoint under another name), or pass --weights."
            )
        else:
            hint = (
                f"Point RAG_WEIGHTS at a local {settings.encoder} model folder (config.json, weights, tokenizer, "
                "preprocessor_config.json), or pass --weights."
            )
        raise fail(f"{e}\n{hint}") from e


def _logging(verbose: bool) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    _verbose(verbose)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"rag (mmrag) {version('mmrag')}")
        raise typer.Exit()


@app.callback()
def _global_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress details.", callback=_logging, expose_value=False)
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True, expose_value=False
        ),
    ] = False,
) -> None:
    pass


def checked(action: Callable[[], T]) -> T:
    """Run a library call, turning the errors a user can fix (bad input, missing extra, store) into a message."""
    from connectors.milvus import StoreError, StoreUnavailableError

    try:
        return action()
    except StoreUnavailableError as e:
        raise store_unavailable(e) from e
    except (ValueError, OSError, ImportError, NotImplementedError, StoreError) as e:
        raise fail(e) from e
