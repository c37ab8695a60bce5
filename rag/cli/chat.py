"""``rag chat``: a conversation in the terminal. Each follow-up is condensed with the history into a standalone
query, retrieved for and answered with citations, printed as the LLM writes it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from rag.cli.answers import checked_llm, print_after_answer, streamed_answer
from rag.cli.common import (
    CollectionOpt,
    EncoderOpt,
    UriOpt,
    VerboseOpt,
    WeightsOpt,
    app,
    checked,
    console,
    load_encoder,
    open_store,
    require_collection,
    settings_from,
)
from rag.cli.exit_codes import ExitCode
from rag.cli.options import LLM_FLAGS, with_options, with_settings
from rag.cli.query import _retriever
from rag.retrieval.options import AnswerOptions

if TYPE_CHECKING:
    from rag.answer.chat import MultimodalChatEngine

HELP = "Type a question. /image PATH attaches a picture to the next one, /reset forgets the conversation, /quit ends."


@app.command()
@with_options(AnswerOptions)
@with_settings({**LLM_FLAGS, "chat_history_tokens": "--history-tokens"}, param="llm_settings")
def chat(
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    *,
    options: AnswerOptions,
    llm_settings: dict[str, object],
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Talk with the collection: follow-up questions understand the ones before (/image PATH, /reset, /quit).

    Exits 4 at the end when any answer broke off or the LLM failed (each is marked where it happened).
    """
    settings = settings_from(collection=collection, milvus_uri=uri, encoder=encoder, weights=weights, **llm_settings)
    require_collection(settings)
    from rag.answer.chat import MultimodalChatEngine

    answering = checked_llm(settings)
    model = load_encoder(settings)
    with open_store(settings, model) as store:
        retriever = _retriever(store, model, options, settings)
        engine = MultimodalChatEngine(
            retriever,
            answering,
            history_tokens=settings.chat_history_tokens,
            max_image_side=settings.llm_max_image_side,
            max_evidence_tokens=settings.llm_max_evidence_tokens,
            rerank_top_n=options.llm_rerank,
        )
        console.print(escape(HELP))
        if answering is None:
            console.print(
                "No LLM is configured (RAG_LLM_MODEL): follow-ups are searched as written, answers list the evidence."
            )
        failed = _converse(engine)
    if failed:
        raise typer.Exit(ExitCode.LLM_FAILED)


def _converse(engine: MultimodalChatEngine) -> bool:
    """Read lines until /quit or the end of the input; answer each question, keeping the conversation.

    True when any answer was partial or the LLM failed.
    """
    image: str | None = None
    failed = False
    while (line := _read()) is not None:
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            engine.reset()
            image = None
            console.print("The conversation is forgotten.")
        elif line.startswith("/image"):
            image = _attach(line[len("/image") :].strip()) or image
        elif line.startswith("/"):
            console.print(f"[yellow]unknown command {escape(line.split()[0])}[/]. {escape(HELP)}")
        elif line:
            failed = _answer(engine, line, image) or failed
            image = None
    return failed


def _read() -> str | None:
    console.print("[bold]>[/] ", end="")
    try:
        return input().strip()
    except EOFError:
        return None


def _attach(raw: str) -> str | None:
    path = Path(raw).expanduser()
    if not raw or not path.is_file():
        console.print(f"[red]not a file:[/] {escape(raw) or '(no path given)'}; nothing attached")
        return None
    console.print(f"The next question comes with the picture {escape(str(path))}.")
    return str(path)


def _answer(engine: MultimodalChatEngine, question: str, image: str | None) -> bool:
    """One turn; a question that cannot be searched (its error printed) leaves the conversation open.

    True when the answer was partial or the LLM failed.
    """
    try:
        stream = checked(lambda: engine.stream_chat(question, image_path=image))
    except typer.Exit:
        return False
    searched = stream.metadata or {}
    if searched.get("query") != question or searched.get("query_image") != image:
        picture = " + picture" if searched.get("query_image") else ""
        typer.echo(f"(searched: {searched.get('query')}{picture})")
    response = streamed_answer(stream, echo=True)
    print_after_answer(response)
    typer.echo()
    return response.failed
