"""`rag ask` streams: tokens on stdout while the LLM is still writing (a real process on a pipe), then the cited
items and the citation check; --json is one object at the end; a stream that breaks off exits 4 with the evidence."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.answer.llm import NO_FINISH
from rag.cli import app
from tests.helpers.llm import FakeLLMServer, Reply, user_parts
from tests.helpers.models import process_env
from tests.retrieval.corpus import COLLECTION, Corpus

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Where is the lighthouse?"


def environment(corpus: Corpus, server: FakeLLMServer) -> dict[str, str]:
    return process_env(
        RAG_MILVUS_URI=corpus.db,
        RAG_COLLECTION=COLLECTION,
        RAG_LLM_BASE_URL=server.url,
        RAG_LLM_MODEL="vision-test",
        RAG_LLM_MAX_RETRIES="0",
        RAG_LLM_TIMEOUT="30",
        COLUMNS="300",
        PYTHONPATH=str(ROOT),
    )


def rag(corpus: Corpus, server: FakeLLMServer, *args: str):
    return CliRunner().invoke(app, list(args), env=environment(corpus, server))


def read_until(process: subprocess.Popen, wanted: str, limit: float = 300.0) -> str:
    """Stdout of ``process`` until it holds ``wanted`` (or the process ends, or ``limit`` seconds pass)."""
    out = b""
    deadline = time.monotonic() + limit
    while wanted.encode() not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            data = os.read(process.stdout.fileno(), 4096)
            if not data:
                break
            out += data
    return out.decode()


@pytest.mark.slow
def test_ask_prints_tokens_while_the_llm_is_still_writing(corpus) -> None:
    reply = Reply("On a rocky cliff [1]. It is dawn.", hold_after=2)
    with FakeLLMServer(reply) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "ask", QUESTION, "-k", "2", "--mode", "text-to-multimodal"],
            env=environment(corpus, server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            early = read_until(process, "On a ")
            reply.release.set()
            rest, errors = process.communicate(timeout=120)
        finally:
            process.kill()
    assert early == "On a " and reply.released is True, errors  # printed before the LLM wrote the rest
    printed = early + rest.decode()
    assert process.returncode == 0, errors
    assert printed.startswith("On a rocky cliff [1]. It is dawn.\n\nCited:\n[1] ")
    assert "Citation check:\n  1 sentence(s) cite no item:\n    - It is dawn.\n" in printed


def test_ask_json_is_one_object_with_the_citation_check(corpus) -> None:
    with FakeLLMServer(Reply("A cliff [1]. Also [9].")) as server:
        result = rag(corpus, server, "ask", QUESTION, "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "answered" and data["answer"] == "A cliff [1]. Also [9]."
    assert data["citation_check"] == {"unknown_citations": [9], "uncited_sentences": [], "uncited": False}
    assert [c["cited"] for c in data["citations"]] == [True, False]


def test_ask_shows_unknown_and_missing_citations_plainly(corpus) -> None:
    with FakeLLMServer(Reply("See [7]. Nothing else.")) as server:
        result = rag(corpus, server, "ask", QUESTION, "-k", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("See [7]. Nothing else.\n\nThe answer cites no item; the evidence was:\n[1] ")
    assert "  [7] is not one of the 2 items the answer was given (unknown citation)" in result.stdout
    assert "  the answer cites none of the 2 items it was given" in result.stdout
    assert "    - Nothing else." in result.stdout


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_ask_when_the_stream_breaks_off_exits_4_keeping_the_partial_answer(corpus, as_json) -> None:
    with FakeLLMServer(Reply("On a rocky cliff [1] at", break_after=5)) as server:
        result = rag(corpus, server, "ask", QUESTION, "-k", "2", *(["--json"] if as_json else []))
    assert result.exit_code == 4, result.output
    if as_json:
        data = json.loads(result.stdout)
        assert data["status"] == "partial" and data["answer"] == "On a rocky cliff [1]"
        assert "stopped mid-answer" in data["error"] and len(data["citations"]) == 2
    else:
        answer, evidence = result.stdout.split("\n\n", 1)
        assert answer.rstrip() == "On a rocky cliff [1]"
        assert evidence.startswith("The answer broke off; the evidence was:\n[1] ")
        assert "\n[2] " in evidence and "stopped mid-answer" in " ".join(result.stderr.split())


def test_ask_and_chat_exit_4_when_the_stream_ends_without_its_finish_signal(corpus) -> None:
    with FakeLLMServer(Reply("On a rocky cliff [1] at dawn", end_after=5)) as server:
        asked = rag(corpus, server, "ask", QUESTION, "-k", "2", "--json")
        chatted = CliRunner().invoke(app, ["chat", "-k", "2"], input=f"{QUESTION}\n", env=environment(corpus, server))
    assert asked.exit_code == 4, asked.output
    data = json.loads(asked.stdout)
    assert data["status"] == "partial" and data["answer"] == "On a rocky cliff [1]"
    assert data["error"] == NO_FINISH
    assert chatted.exit_code == 4, chatted.output
    assert "On a rocky cliff [1] \n\nThe answer broke off" in chatted.stdout  # the tokens as streamed


@pytest.mark.slow
def test_chat_streams_each_answer_while_the_llm_is_still_writing(corpus) -> None:
    reply = Reply("On a rocky cliff [1].", hold_after=2)
    with FakeLLMServer(reply) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "chat", "-k", "2"],
            env=environment(corpus, server),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            process.stdin.write(f"{QUESTION}\n".encode())
            process.stdin.flush()
            early = read_until(process, "On a ")
            reply.release.set()
            rest, errors = process.communicate(b"/quit\n", timeout=120)
        finally:
            process.kill()
    assert early == "On a " and reply.released is True, errors
    assert process.returncode == 0, errors
    assert (early + rest.decode()).startswith("On a rocky cliff [1].\n\nCited:\n[1] ")


def test_chat_condenses_follow_ups_carries_the_picture_and_resets(corpus) -> None:
    picture = str(corpus.pictures[3])
    script = [
        Reply("A lighthouse [1]."),
        Reply("Is the lighthouse lit at night?\nPICTURE: 1"),
        Reply("Yes, at dawn too [2]."),
        Reply("No idea."),
    ]
    lines = [f"/image {picture}", "What is this?", "And at night?", "/nonsense", "/reset", "Hello?", "/quit"]
    with FakeLLMServer(*script) as server:
        typed = "\n".join(lines) + "\n"
        result = CliRunner().invoke(app, ["chat", "-k", "2"], input=typed, env=environment(corpus, server))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "A lighthouse [1].\n\nCited:\n[1] " in out
    assert "(searched: Is the lighthouse lit at night? + picture)\nYes, at dawn too [2].\n" in out
    assert "No idea.\n\nThe answer cites no item; the evidence was:" in out  # after /reset: no condensing
    assert len(server.requests) == 4
    condensing, _ = user_parts(server.requests[1])
    assert "User: What is this? [attached picture 1]\nAssistant: A lighthouse [1]." in condensing
    assert "Question: Is the lighthouse lit at night?" in user_parts(server.requests[2])[0]
    assert len(user_parts(server.requests[2])[1]) == 3  # two items' pictures and the earlier turn's picture
    assert "Question: Hello?" in user_parts(server.requests[3])[0]
    errors = " ".join(result.stderr.split())
    assert "unknown command /nonsense" in errors and "The conversation is forgotten." in errors
