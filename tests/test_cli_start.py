"""What answers quickly: `--help`, `--version`, `rag stats`, argument errors and a missing collection load no torch,
transformers, LlamaIndex or Ray; and the read-only commands create nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from connectors.sources import SourceOptions, count_items

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import json, sys
    from typer.testing import CliRunner
    from connectors.milvus import EncoderInfo, MilvusStore
    env = {"COLUMNS": "300", "RAG_MILVUS_URI": None}
    if sys.argv[1]:
        MilvusStore.open(sys.argv[1], "kb", encoder_info=EncoderInfo(variant="v", dim=4, fingerprint="f")).close()
        env["RAG_MILVUS_URI"] = sys.argv[1]
    from rag.cli import app
    result = CliRunner().invoke(app, json.loads(sys.argv[2]), env=env, prog_name="rag")
    heavy = sorted(m for m in ("torch", "transformers", "llama_index", "ray") if m in sys.modules)
    print(json.dumps({"code": result.exit_code, "output": result.output, "heavy": heavy}))
    """
)


def invoke(tmp_path: Path, *args: str, store: bool = True) -> dict:
    """Run ``rag args`` in a fresh interpreter in ``tmp_path``, over a collection kb (``store``) or no database."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "db" / "milvus.db") if store else "", json.dumps(list(args))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("RAG_")}, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--help"], 0, "ingest"),
        (["--version"], 0, "rag (mmrag) 0.1.0"),
        (["stats", "-c", "kb"], 0, "kb"),
        (["stats", "-c", "kb", "-v"], 0, "kb"),
        (["search", "-c", "nope", "-t", "x"], 2, "there is no collection 'nope'"),
        (
            ["search", "-c", "kb", "-t", "x", "--mode", "bogus"],
            2,
            "--mode must be one of text-to-any, text-to-multimodal",
        ),
        (["search", "-c", "kb", "-t", "x", "--filter", "{not json"], 2, "not valid JSON"),
        (["search", "-c", "kb", "-t", "x", "--filter", "tags=red,blue"], 2, "filter 'blue': write key=value pairs"),
        (["search", "-c", "kb", "-t", "x", "--encoder", "siglip"], 2, "encoder: Input should be"),
        (
            ["eval", "-q", str(ROOT / "examples" / "eval" / "queries.jsonl"), "--encoder", "siglip"],
            2,
            "encoder: Input should",
        ),
        (["search", "-c", "kb", "-t", "x", "--filter", '{"created_at": {">=": "yesterday"}}'], 2, "ISO date-time"),
        (["search", "-c", "kb", "-t", "x", "--mode", "image-to-image"], 2, "needs a query image (--image)"),
        (["ask", "", "-c", "kb"], 2, "give a query: the question and/or --image"),
        (["ask", "what?", "-c", "kb", "--mode", "composed-to-image"], 2, "needs a query image (--image)"),
        (["map", "-c", "kb", "--method", "foo"], 2, "--method must be one of pca, tsne, umap, not 'foo'"),
        (["map", "-c", "kb", "-o", "map.gif"], 2, "cannot save a map as 'map.gif'"),
        (["ask", "what?", "-c", "kb", "--fusion", "max"], 2, "--fusion must be one of weighted, rrf, not 'max'"),
        (["search", "-c", "kb", "-t", "x", "--blend", "fused=0.5,colour=0.5"], 2, "unknown signal(s) 'colour'"),
        (["search", "-c", "kb", "-t", "x", "--blend", "image=-1"], 2, "weights must be 0 or more"),
        (["ask", "what?", "-c", "kb", "--hybrid", "--min-score", "0.5"], 2, "means nothing on RRF"),
        (["ingest", "x", "-c", "kb", "--workers", "2"], 2, "--workers apply to --engine ray"),
        (["ingest", "x", "-c", "kb", "--engine", "spark"], 2, "--engine must be local or ray"),
    ],
)
def test_quick_answers_load_no_heavy_library(tmp_path, args, code, says) -> None:
    result = invoke(tmp_path, *args)
    assert (result["code"], result["heavy"]) == (code, []), result["output"]
    assert says in " ".join(result["output"].split())


@pytest.mark.parametrize(
    "args",
    [
        ["stats", "-c", "kb"],
        ["search", "-c", "kb", "-t", "x"],
        ["ask", "what?", "-c", "kb"],
        ["map", "-c", "kb"],
        ["eval", "-q", str(ROOT / "examples" / "eval" / "queries.jsonl"), "-c", "kb"],
        ["serve", "-c", "kb"],
    ],
)
def test_read_only_commands_create_nothing(tmp_path, args) -> None:
    result = invoke(tmp_path, *args, store=False)
    assert (result["code"], result["heavy"]) == (2, []), result["output"]
    message = " ".join(result["output"].split())
    assert f"no Milvus Lite database at {tmp_path / 'rag_data' / 'milvus.db'}" in message
    assert "./rag_data/milvus.db is relative to the current folder" in message
    assert "point --uri (RAG_MILVUS_URI) at an existing one" in message  # the library's error, in the CLI's words
    assert list(tmp_path.iterdir()) == []


def test_help_reads_like_any_click_command(tmp_path) -> None:
    for command in ("ingest", "search", "similarity", "map"):
        output = invoke(tmp_path, command, "--help", store=False)["output"]
        assert "Usage: rag " + command in output and "<bool>" not in output and "<list[" not in output, output
        assert "{" not in output.splitlines()[1], output
    usage = " ".join(invoke(tmp_path, "ingest", "--help", store=False)["output"].split())
    assert "Usage: rag ingest [OPTIONS] SOURCES..." in usage and "--allow-urls Fetch" in usage


def test_items_are_counted_cheaply_where_possible(tmp_path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for name in ("a.jpg", "b.PNG", "sub/c.webp", ".hidden/d.jpg", "a.txt", ".notes.md"):
        (folder / name).write_bytes(b"x")
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    csv = tmp_path / "m.csv"
    csv.write_text('image,text\na.jpg,"two\nlines"\nb.jpg,plain\n')
    assert count_items([folder, jsonl, csv, tmp_path / "missing"], SourceOptions(cache_dir=tmp_path / "cache")) == 7
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")
    assert count_items([folder, tmp_path / "doc.pdf"]) is None  # a PDF's figures are found only by reading it
    (folder / "sub" / "notes.md").write_text("# Notes")
    assert count_items([folder]) is None  # nor are a document's chunks, in a folder or not


def test_verbose_works_before_and_after_the_command(tmp_path, monkeypatch) -> None:
    import logging

    from typer.testing import CliRunner

    from connectors.milvus import EncoderInfo, MilvusStore
    from rag.cli import app

    db = str(tmp_path / "milvus.db")
    MilvusStore.open(db, "kb", encoder_info=EncoderInfo(variant="v", dim=4, fingerprint="f")).close()
    monkeypatch.setenv("RAG_MILVUS_URI", db)
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # put back after the test
    levels = []
    for args in (["stats", "-c", "kb"], ["-v", "stats", "-c", "kb"], ["stats", "-c", "kb", "--verbose"]):
        assert CliRunner().invoke(app, args).exit_code == 0
        levels.append(root.level)
    assert levels == [logging.WARNING, logging.INFO, logging.INFO]


def test_verbose_logs_progress_without_the_faiss_loader(tmp_path) -> None:
    from connectors.milvus import EncoderInfo, MilvusStore

    db = str(tmp_path / "milvus.db")
    MilvusStore.open(db, "kb", encoder_info=EncoderInfo(variant="v", dim=4, fingerprint="f")).close()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAG_")}, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "rag.cli", "-v", "stats", "-c", "kb", "--uri", db],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    # -v still logs: the folder's shared server, found or started (Milvus Lite itself logs in that server's log)
    assert "INFO connectors.milvus.lite_server" in run.stderr and "Milvus Lite server for" in run.stderr
    assert "faiss" not in run.stderr
