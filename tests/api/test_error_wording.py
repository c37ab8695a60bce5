"""Library errors tell Python callers what to set as Python spells it (``collection=``, ``yes=True``, settings),
never as ``rag``'s flags; the CLI says the same errors with its flags."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from connectors.milvus import CollectionNotFoundError, DatabaseNotFoundError
from rag import KnowledgeBase
from rag.cli.common import said
from rag.ingest.sync import PruneRefusedError, check
from tests.api.test_knowledge_base import tiny_settings

ROOT = Path(__file__).resolve().parents[2]
#: A command-line flag (``--yes``, ``-c NAME``) outside backticks (`ray start --head` is another program's).
FLAG = re.compile(r"(?:^|[\s(/])(?:--[a-z][a-z-]+|-c [A-Z{])")


def test_no_error_raised_by_the_library_names_a_cli_flag() -> None:
    found = []
    for path in [*(ROOT / "rag").rglob("*.py"), *(ROOT / "connectors").rglob("*.py")]:
        if path.is_relative_to(ROOT / "rag" / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for part in ast.walk(node.exc):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        if FLAG.search(re.sub(r"`[^`]*`", "", part.value)):
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {part.value[:60]}")
    assert found == []


def test_a_knowledge_base_names_its_parameters_and_the_cli_its_flags(kb: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(DatabaseNotFoundError) as missing:
        KnowledgeBase("kb", settings=tiny_settings(tmp_path / "elsewhere")).count()
    assert "point uri= (RAG_MILVUS_URI) at an existing one" in str(missing.value) and "--" not in str(missing.value)
    assert "point --uri (RAG_MILVUS_URI) at an existing one" in said(missing.value)
    assert kb.store.count() == 0  # the collection exists now
    with pytest.raises(CollectionNotFoundError) as absent:
        KnowledgeBase("absent", settings=kb.settings).count()
    assert str(absent.value).endswith("name another with collection= (RAG_COLLECTION).")
    assert said(absent.value).endswith("name another with -c/--collection (RAG_COLLECTION).")


def test_a_refused_prune_and_ocr_without_its_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from connectors.sources import ocr

    with pytest.raises(PruneRefusedError) as refused:
        check(8, 10, found_items=True, yes=False, sources=["notes"])
    assert str(refused.value).endswith("check the paths, or pass yes=True") and refused.value.deleting == 8
    assert said(refused.value).endswith("check the paths (--dry-run lists them), or add --yes")
    monkeypatch.setattr(ocr, "ocr_installed", lambda: False)
    with pytest.raises(ocr.OcrUnavailableError) as no_ocr:
        KnowledgeBase(settings=tiny_settings(tmp_path)).ingest([], ocr="all")  # refused before anything loads
    assert str(no_ocr.value).startswith('ocr="all" (RAG_OCR=all) needs the OCR extra')
    assert said(no_ocr.value).startswith("--ocr all needs the OCR extra") and "or --ocr off" in said(no_ocr.value)
