"""The ``rag`` command: a thin shell over the library, one module per command group."""

from __future__ import annotations

import logging

# Imported in the order `rag --help` lists their commands; each registers its own.
from rag.cli import analyses, chat, config, evaluate, ingest, lifecycle, migrate, query, serve, tokens  # noqa: F401, I001
from rag.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """The ``rag`` command: run it, then leave without tearing the interpreter down.

    With torch loaded, the interpreter's clean-up takes about a second and does nothing a finished
    command needs: every command has closed its store and written its output by then.
    """
    import os
    import sys

    try:
        app()
        code: object = 0
    except SystemExit as e:
        code = e.code
    except Exception as e:  # the store went away where no command expected it: one paragraph, no traceback
        from connectors.milvus import is_unreachable
        from rag.cli.common import store_unavailable

        if not is_unreachable(e):
            raise
        code = store_unavailable(e).exit_code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
