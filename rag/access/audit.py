"""The audit log: one JSON line per change (ingest, delete, drop, token added or revoked), appended, never rewritten.

Each line holds the time, the token's name and tenant (None: no token, or a local command, whose line names
the system user instead), the action, and what the action names (files, filter) and counted. Searches are
written only when asked (``--audit-reads``). Read it with ``jq``:
``jq 'select(.action == "delete")' rag_data/audit.jsonl``.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .tokens import Principal

AUDIT_FILE = "audit.jsonl"
#: Actions that read; the others change the collection or the tokens and are always written.
READ_ACTIONS = frozenset({"search", "ask", "chat"})


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return None


class AuditLog:
    """Appends to ``data_dir/audit.jsonl`` (created 0600); every process on the folder appends to the same file."""

    def __init__(self, data_dir: Path, *, reads: bool = False) -> None:
        self.path = Path(data_dir) / AUDIT_FILE
        self.reads = reads
        self._lock = threading.Lock()

    def record(self, action: str, who: Principal | None, **details: Any) -> None:
        """Append one line for ``action`` by ``who`` (None: a local command); reads only when the log keeps them.
        A ``tenant`` among ``details`` names the tenant a local command acted in."""
        if action in READ_ACTIONS and not self.reads:
            return
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "token": who.name if who is not None else None,
            "tenant": who.tenant if who is not None else None,
            "action": action,
            **({"user": _user()} if who is None else {}),
            **details,
        }
        data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            # O_APPEND: each line is one write at the end of the file, whoever else appends meanwhile.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
