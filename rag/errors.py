"""The one base of every error the library raises: ``except RagError`` catches them all.

Each error keeps the built-in base it had before (``ValueError`` for bad input, ``RuntimeError`` for a store or a
model that cannot do what was asked, ...), so code that catches those still works.

A message that tells the caller what to set says it as Python callers write it (``yes=True``, ``collection=``,
``RAG_COLLECTION``), never as ``rag``'s flags: such an error is made with :meth:`RagError.worded`, its template
naming what to set as ``{yes}``, ``{collection}``, ...; ``rag`` says it with its flags (:meth:`RagError.reworded`).
"""

from __future__ import annotations

from typing import TypeVar

_E = TypeVar("_E", bound="RagError")

#: How Python callers set what messages name: the parameters of ``KnowledgeBase`` and the library's functions,
#: and the settings (``RAG_*``, ``rag.Settings``).
PYTHON_NAMES = {
    "collection": "collection= (RAG_COLLECTION)",
    "uri": "uri= (RAG_MILVUS_URI)",
    "port": "port= (RAG_SERVER_PORT)",
    "yes": "pass yes=True",
    "dry_run": "",  # the CLI's preview; Python has none
    "ocr_all": 'ocr="all" (RAG_OCR=all)',
    "ocr_auto": 'ocr="auto"',
    "ocr_off": 'ocr="off"',
    "new_name": "collection=",
    "replace": "pass replace=True",
    "ray_address": "address",
    "workers": "workers",
    "gpus_per_worker": "gpus_per_worker",
    "cpus_per_worker": "cpus_per_worker",
}


class RagError(Exception):
    """An error raised by this library; its message says what went wrong and what to do."""

    #: The message with ``{name}`` where it names something to set (see the module); None: it names nothing.
    wording: str | None = None

    @classmethod
    def worded(cls: type[_E], template: str, *args: object) -> _E:
        """The error whose message is ``template`` with each ``{name}`` of :data:`PYTHON_NAMES` as Python says it
        (``args``: the error's other arguments). Only those names are replaced: the rest of the template (a path, a
        value) is kept as it is."""
        error = cls(_say(template, PYTHON_NAMES), *args)
        error.wording = template
        return error

    def reworded(self, **names: str) -> str:
        """The message naming what to set as ``names`` spell it (``yes="add --yes"``), Python's way otherwise."""
        if self.wording is None:
            return str(self)
        return _say(self.wording, {**PYTHON_NAMES, **names})


def _say(template: str, names: dict[str, str]) -> str:
    for name, said in names.items():
        template = template.replace("{" + name + "}", said)
    return template
