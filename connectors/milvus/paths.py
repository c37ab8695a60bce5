"""Where a store lives: a Milvus server's URI as given, or a Milvus Lite data folder checked before anything is
written to it (a file, a foreign folder or one this user cannot write is refused, changing nothing)."""

from __future__ import annotations

import os
from pathlib import Path

from connectors.milvus.errors import DatabaseNotFoundError, StoreError

__all__ = ["resolve"]


def resolve(uri: str | os.PathLike[str], *, create: bool) -> tuple[str, bool]:
    """The URI to connect to and whether it is a Milvus Lite path. A Lite path must end in ``.db`` and name a
    Milvus Lite folder this process may write; its parent is created when ``create``, else it must exist."""
    uri = str(uri)
    if "://" in uri:
        return uri, False
    path = Path(uri).expanduser()
    if path.suffix != ".db":
        raise StoreError(f"a Milvus Lite path must end in .db (got {uri!r}); for a Milvus server use http://host:19530")
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the Milvus Lite data {path.absolute()}: {exc}") from exc
    elif not path.exists():
        relative = "" if path.is_absolute() else f" ({uri} is relative to the current folder, {Path.cwd()})"
        raise DatabaseNotFoundError.worded(
            f"there is no Milvus Lite database at {path.absolute()}{relative}. Ingest into it first, "
            "or point {uri} at an existing one."
        )
    _check_lite_folder(path.absolute())
    return str(path.absolute()), True


def _check_lite_folder(path: Path) -> None:
    """Refuse, changing nothing, a path that is not a Milvus Lite 3 folder or that cannot be written."""
    advice = "Nothing was changed: point {uri} at another path, or move it aside."
    if path.exists() and not path.is_dir():
        raise StoreError.worded(
            f"{path} is a file, not a Milvus Lite data folder (Milvus Lite 3 keeps a folder; Milvus Lite 2 kept "
            f"one file, which it cannot read). {advice}"
        )
    if path.is_dir() and any(path.iterdir()) and not (path / "collections").is_dir():
        raise StoreError.worded(
            f"{path} holds other files and is not a Milvus Lite data folder (no collections/). {advice}"
        )
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        raise StoreError(
            f"the Milvus Lite data {path} cannot be written by this user ({target} is read-only to it); Milvus Lite "
            "writes even to search (its lock and log). Fix the permissions, or copy the folder somewhere writable."
        )
