"""Every exit status of the ``rag`` command, in one place (the README's table lists the same)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: ingest: some inputs were skipped (each is in the report); everything else was stored
    ITEMS_SKIPPED = 1
    #: a usage or input error: a bad option, a missing file or collection, a model that cannot load
    USAGE = 2
    #: ingest: the sources hold no item; nothing was created or changed. Also ingest --prune: it refused to delete
    #: (the sources gave no item, or more than half of the items in scope would go) without --yes
    NO_ITEMS = 3
    #: ask, chat: the LLM failed, before or during its answer, or the answer is partial (cut off, or at the LLM's
    #: output token limit); the evidence (and any partial answer) was printed
    LLM_FAILED = 4
    #: the Milvus store could not be reached, or went away mid-command
    STORE_UNAVAILABLE = 5
