"""The public API: what ``rag`` exports, that mypy sees real types through it, and one base for every error."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rag
from rag.errors import RagError

ROOT = Path(__file__).resolve().parents[2]


def test_every_exported_name_resolves_and_is_listed_once() -> None:
    for name in rag.__all__:
        assert getattr(rag, name) is not None, name
    assert sorted(rag.__all__) == sorted({*rag._LAZY, "RagError", "__version__"})
    assert rag.VisualizedBGE.__module__ == "rag.embeddings.visualized_bge.encoder"


def test_exported_errors_derive_from_rag_error_and_keep_their_builtin_base() -> None:
    errors = [getattr(rag, name) for name in rag.__all__ if name.endswith("Error")]
    assert len(errors) > 10
    for error in errors:
        assert issubclass(error, RagError), error
    assert issubclass(rag.FilterError, ValueError)
    assert issubclass(rag.StoreError, RuntimeError)
    assert issubclass(rag.NotSupportedError, NotImplementedError)
    assert issubclass(rag.ImageLoadError, ValueError)


def _error_classes() -> dict[str, list[str]]:
    """Every class the package and the connectors define whose name ends in Error, with its base names."""
    found = {}
    for folder in ("rag", "connectors"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and (node.name.endswith("Error") or node.name == "BadInput"):
                    bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                    if "BaseModel" in bases:  # a value (rag.items.SourceError), not an exception
                        continue
                    found[f"{path.relative_to(ROOT)}:{node.name}"] = bases
    return found


def test_every_error_class_in_the_code_derives_from_rag_error() -> None:
    classes = _error_classes()
    by_name = {key.split(":")[1]: bases for key, bases in classes.items()}

    def derives(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name == "RagError":
            return True
        bases = by_name.get(name, [])
        return any(derives(base, seen | {name}) for base in bases if base not in seen)

    assert len(classes) > 15
    assert [key for key in classes if not derives(key.split(":")[1])] == []


def _mypy(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict over a user's script, the package found in this checkout (its cache shared with `make lint`)."""
    path = tmp_path / "user_script.py"
    path.write_text(textwrap.dedent(script))
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-error-summary", "--strict",
         "--cache-dir", str(ROOT / ".mypy_cache"), "--config-file", str(config), str(path)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "MYPYPATH": str(ROOT)},
    )  # fmt: skip


@pytest.mark.slow
def test_mypy_sees_the_real_classes_through_rag(tmp_path: Path) -> None:
    good = _mypy(
        """
        from rag import MultimodalRetriever, QueryOptions, RagError, Settings, StoreError, VisualizedBGE

        def width(encoder: VisualizedBGE) -> int:
            return encoder.dim

        def top(options: QueryOptions) -> int | None:
            return options.top_k

        def collection(settings: Settings) -> str:
            return settings.collection

        def retriever_class() -> type[MultimodalRetriever]:
            return MultimodalRetriever

        def caught(error: StoreError) -> RagError:
            return error
        """,
        tmp_path,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _mypy(
        """
        from rag import QueryOptions, VisualizedBGE

        def width(encoder: VisualizedBGE) -> str:
            return encoder.no_such_attribute

        def top(options: QueryOptions) -> str:
            return options.top_k
        """,
        tmp_path,
    )
    assert bad.returncode == 1
    assert '"VisualizedBGE" has no attribute "no_such_attribute"' in bad.stdout
    assert 'Incompatible return value type (got "int | None", expected "str")' in bad.stdout
