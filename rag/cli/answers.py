"""How the CLI prints an answer: its tokens as they come, then the items it cites and the check of its citations.

Shared by ``rag ask`` and ``rag chat``. The answer's text and every item's name are printed as
plain text (never as Rich markup).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError
from rich.markup import escape

from rag.cli.common import console, fail

if TYPE_CHECKING:  # the CLI starts without LlamaIndex; these load with the command that needs them
    from llama_index.core.llms import LLM

    from rag.answer import AnswerResponse, CitationCheck, StreamingAnswerResponse
    from rag.settings import Settings


def merged_note(merged: int) -> str:
    duplicates = f"{merged} duplicate{'s' if merged != 1 else ''}"
    return f"{duplicates} merged (same item, or same image and text); --no-dedup lists them"


def checked_llm(settings: Settings) -> LLM | None:
    """The LLM the settings name (None: answers list the evidence); a usage error when it cannot be made."""
    from rag.answer import llm_from_settings

    try:
        return llm_from_settings(settings)
    except (ValidationError, ImportError) as e:
        raise fail(str(e)) from e


def streamed_answer(streamed: StreamingAnswerResponse, echo: bool) -> AnswerResponse:
    """The finished answer of a ``StreamingAnswerResponse``, its tokens printed on stdout as they come when ``echo``."""
    for token in streamed.response_gen:
        if echo:
            sys.stdout.write(token)
            sys.stdout.flush()
    if echo:
        sys.stdout.write("\n")
    return streamed.get_response()


def print_after_answer(response: AnswerResponse) -> None:
    """What follows a printed answer: the items it cites (all of them when it cites none or broke off), the check
    of its citations, merged duplicates, and the errors."""
    from rag.answer import AnswerStatus
    from rag.retrieval import Evidence, merged_count

    if response.status is AnswerStatus.PARTIAL:
        console.print(f"[bold red]error:[/] {escape(response.error or '')}")
    if response.status in (AnswerStatus.ANSWERED, AnswerStatus.PARTIAL):
        cited = response.cited if response.status is AnswerStatus.ANSWERED else []
        heading = "Cited:" if cited else "The answer cites no item; the evidence was:"
        if response.status is AnswerStatus.PARTIAL:
            heading = "The answer broke off; the evidence was:"
        typer.echo(f"\n{heading}")
        for c in cited or response.citations:
            reason = f"  (rerank: {c.rerank_reason})" if c.rerank_reason else ""
            passages = f"  (+{len(c.passages)} of its chunks, sent as part of the page)" if c.passages else ""
            typer.echo(f"[{c.rank}] {c.name}  id={c.id}  image={c.image or '-'}{passages}{reason}")
        print_citation_check(response.citation_check, len(response.citations))
    merged = merged_count(list[Evidence](response.citations))
    if merged:
        typer.echo(merged_note(merged))
    if response.rerank_error:
        console.print(f"[yellow]warning:[/] {escape(response.rerank_error)}")


def print_citation_check(check: CitationCheck | None, shown: int) -> None:
    """The check of the answer's markers, in plain words (nothing when every sentence cites a known item)."""
    if check is None or check.clean:
        return
    typer.echo("\nCitation check:")
    for number in check.unknown_citations:
        typer.echo(f"  [{number}] is not one of the {shown} items the answer was given (unknown citation)")
    if check.uncited:
        typer.echo(f"  the answer cites none of the {shown} items it was given")
    if check.uncited_sentences:
        typer.echo(f"  {len(check.uncited_sentences)} sentence(s) cite no item:")
        for sentence in check.uncited_sentences:
            typer.echo(f"    - {sentence}")
