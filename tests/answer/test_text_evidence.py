"""Answers cite text: `rag ask` sends text chunks to the LLM as text evidence headed by their name and anchor,
beside the pictures and within a token budget, and lists the cited items by name and anchor."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from rag.answer.budget import count_tokens, fair_shares, within_budget
from rag.cli import app
from rag.items import KnowledgeItem
from tests.helpers.llm import FakeLLMServer, Reply, user_parts
from tests.helpers.models import process_env
from tests.retrieval.corpus import draw, image_item, ingest_items

CHUNKS = {
    "report.docx#tracking-faults": "Tracking faults are reported by the watchdog within two seconds.",
    "spec.pdf#page=7": "Page seven lists the torque limits of the carriage motor.",
}
LONG = ("long.txt#chunk=1", " ".join(f"word{i}" for i in range(3000)))
PHOTO = ("photo.png", "the carriage photographed from the left")
QUESTION = "How are tracking faults reported?"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> str:
    root = tmp_path_factory.mktemp("text-evidence")
    picture = draw(root / "photo.png", seed=3)
    items = [
        KnowledgeItem.create(source=f"/srv/docs/{name}", text=text)  # named by its file name and anchor
        for name, text in [*CHUNKS.items(), LONG]
    ]
    items.append(image_item(f"/srv/docs/{PHOTO[0]}", PHOTO[1], picture))
    db = str(root / "milvus.db")
    ingest_items(db, "docs", tiny_base, items)
    return db


def ask(db: str, server: FakeLLMServer, *args: str, **env: str):
    environment = process_env(
        RAG_MILVUS_URI=db,
        RAG_COLLECTION="docs",
        RAG_LLM_BASE_URL=server.url,
        RAG_LLM_MODEL="vision-test",
        RAG_LLM_MAX_RETRIES="0",
        COLUMNS="300",
        **env,
    )
    return CliRunner().invoke(app, ["ask", QUESTION, "-k", "10", *args], env=environment)


def evidence_items(text: str) -> dict[str, str]:
    """The evidence the LLM was sent, by each item's heading (without its marker)."""
    parts = re.split(r"\n\[\d+\] (.+)\n", text.split("Question:")[0])
    return dict(zip(parts[1::2], parts[2::2]))


def test_ask_sends_text_chunks_as_text_evidence_with_their_anchors(db) -> None:
    with FakeLLMServer(Reply("The watchdog reports them [1][2][3][4].")) as server:
        result = ask(db, server)
        as_json = ask(db, server, "--json")
    assert result.exit_code == 0, result.output
    text, images = user_parts(server.requests[0])
    assert len(images) == 1  # the photo; the chunks travel as text
    items = evidence_items(text)
    for name, chunk in CHUNKS.items():
        assert chunk in items[f"{name} (text)"], name
    assert PHOTO[1] in items["photo.png (its picture is image #1)"]
    assert "/srv/docs" not in text  # names, never the paths of the machine that ingested them
    cited = result.stdout.split("Cited:")[1]
    for name in [*CHUNKS, PHOTO[0], LONG[0]]:
        assert re.search(rf"^\[\d\] {re.escape(name)}  id=", cited, re.MULTILINE), name
    citations = json.loads(as_json.stdout)["citations"]
    by_name = {c["name"]: c for c in citations}
    assert by_name["report.docx#tracking-faults"]["document"] == "report.docx"
    assert by_name["report.docx#tracking-faults"]["anchor"] == "#tracking-faults"
    assert by_name["spec.pdf#page=7"]["anchor"] == "#page=7" and by_name["photo.png"]["anchor"] is None


def test_the_evidence_text_fits_its_token_budget_and_long_texts_are_cut_first(db) -> None:
    with FakeLLMServer(Reply("[1]")) as server:
        result = ask(db, server, RAG_LLM_MAX_EVIDENCE_TOKENS="400")
    assert result.exit_code == 0, result.output
    text, _ = user_parts(server.requests[0])
    assert all(chunk in text for chunk in CHUNKS.values()) and PHOTO[1] in text  # the short texts whole
    assert "word50 " in text and "word2999" not in text and "to fit the evidence budget" in text
    evidence = text.split("Question:")[0]
    assert count_tokens(evidence) < 400 + 200  # the headings and cut notes are outside the budget


def test_fair_shares_keep_short_texts_whole_and_split_the_rest() -> None:
    assert fair_shares([10, 500, 40], 200) == [10, 150, 40]
    assert fair_shares([10, 500, 40], 60) == [10, 25, 25]
    assert fair_shares([10, 20], 1000) == [10, 20]
    assert fair_shares([], 100) == []
    short, cut, gone = within_budget(["a few words", "many words " * 400, "more words " * 400], 40)
    assert short == "a few words" and "cut to" in cut and count_tokens(cut.split(" …")[0]) <= 20
    assert within_budget(["one", "two"], 1)[1].startswith("(its text is left out")
