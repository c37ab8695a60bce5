"""What answers quickly: `--help`, `rag stats` and argument errors load no torch, transformers, LlamaIndex or Ray."""

from __future__ import annotations

import json
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
    MilvusStore.open(sys.argv[1], "kb", encoder_info=EncoderInfo(variant="v", dim=4, fingerprint="f")).close()
    from rag.cli import app
    result = CliRunner().invoke(app, json.loads(sys.argv[2]), env={"RAG_MILVUS_URI": sys.argv[1]})
    heavy = sorted(m for m in ("torch", "transformers", "llama_index", "ray") if m in sys.modules)
    print(json.dumps({"code": result.exit_code, "output": result.output, "heavy": heavy}))
    """
)


def invoke(tmp_path: Path, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "db" / "milvus.db"), json.dumps(list(args))],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--help"], 0, "ingest"),
        (["stats", "-c", "kb"], 0, "kb"),
        (["search", "-c", "kb", "-t", "x", "--mode", "bogus"], 2, "unknown mode 'bogus'"),
        (["search", "-c", "kb", "-t", "x", "--filter", "{not json"], 2, "not valid JSON"),
        (["search", "-c", "kb", "-t", "x", "--filter", '{"created_at": {">=": "yesterday"}}'], 2, "ISO date-time"),
        (["search", "-c", "kb", "-t", "x", "--mode", "image-to-image"], 2, "needs a query image"),
        (["ask", "what?", "-c", "kb", "--fusion", "max"], 2, "--fusion must be rrf or weighted"),
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


def test_items_are_counted_cheaply_where_possible(tmp_path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for name in ("a.jpg", "b.PNG", "sub/c.webp", ".hidden/d.jpg", "a.txt", "notes.md"):
        (folder / name).write_bytes(b"x")
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    csv = tmp_path / "m.csv"
    csv.write_text('image,text\na.jpg,"two\nlines"\nb.jpg,plain\n')
    assert count_items([folder, jsonl, csv, tmp_path / "missing"], SourceOptions(cache_dir=tmp_path / "cache")) == 7
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")
    assert count_items([folder, tmp_path / "doc.pdf"]) is None  # a PDF's figures are found only by reading it
