"""The ``rag`` command: a thin shell over the library, one module per command group (``rag.cli.commands`` lists them).

Importing this package loads nothing else: ``rag`` first offers a model command to the warm model process
(``rag.cli.warm``), and loads the commands only when it runs one itself.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typer import Typer

__all__ = ["app", "main"]


def __getattr__(name: str) -> Typer:
    if name == "app":  # `from rag.cli import app`: the Typer app, its commands registered
        from rag.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """The ``rag`` command: hand it to the warm model process, or run it here; then leave without tearing the
    interpreter down.

    With torch loaded, the interpreter's clean-up takes about a second and does nothing a finished
    command needs: every command has closed its store and written its output by then.
    """
    from rag.cli.warm.client import dispatch

    argv = sys.argv[1:]
    code = dispatch(argv)
    if code is None:
        from rag.cli.commands import run

        code = run(argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
