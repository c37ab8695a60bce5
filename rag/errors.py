"""The one base of every error the library raises: ``except RagError`` catches them all.

Each error keeps the built-in base it had before (``ValueError`` for bad input, ``RuntimeError`` for a store or a
model that cannot do what was asked, ...), so code that catches those still works.
"""

from __future__ import annotations


class RagError(Exception):
    """An error raised by this library; its message says what went wrong and what to do."""
