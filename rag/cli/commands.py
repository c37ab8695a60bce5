"""Every ``rag`` command, registered on the Typer app, and how one command line runs in this process."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# Imported in the order `rag --help` lists their commands; each registers its own.
# isort: off
from rag.cli import analyses, chat, config, evaluate, ingest, lifecycle, migrate, backup, query, serve, tokens  # noqa: F401
from rag.cli import processes  # noqa: F401
from rag.cli.common import app

# isort: on

__all__ = ["app", "run"]


def run(argv: Sequence[str], prog_name: str | None = None) -> int:
    """Run ``rag argv`` here and return its exit status (a store gone away where no command expected it: one
    paragraph, no traceback)."""
    try:
        app(args=list(argv), prog_name=prog_name)
        code: object = 0
    except SystemExit as e:
        code = e.code
    except Exception as e:
        from connectors.milvus import is_unreachable
        from rag.cli.common import store_unavailable

        if not is_unreachable(e):
            raise
        code = store_unavailable(e).exit_code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    return int(code or 0)
