"""``rag backup`` / ``rag restore``: a collection copied to a folder with its vectors, and back.

A backup folder holds ``manifest.json`` (format, collection, schema version, encoder, properties, item count,
time), the items in batches (``batch-NNNNN.jsonl``: one item a line; ``batch-NNNNN.npz``: their ids, fused and
image vectors) and ``uploads/``: a copy of the files under the data folder's ``uploads`` that items point to
(those of `rag serve`'s uploads, and only those). The manifest is written last: a folder without one is not a
backup.

The items are read through one query iterator, in one pass; writes made during the backup may or may not be in
it. Nothing is encoded again on restore: the vectors are written as they were. The BM25 statistics a Milvus Lite
collection keeps beside it are not copied: the store weighs every item as it is written, so a restore rebuilds
them from the items' text (a Milvus server computes BM25 itself).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from connectors.milvus import schema
from connectors.milvus.connection import Connection, ConnectOptions
from connectors.milvus.errors import StoreError
from connectors.milvus.migrate import _drop, _swap, _write
from connectors.milvus.schema import EncoderInfo
from connectors.milvus.store import MilvusStore
from rag.items import KnowledgeItem

logger = logging.getLogger(__name__)

#: The version of the folder's layout; a restore refuses others.
FORMAT = 1
MANIFEST = "manifest.json"
UPLOADS = "uploads"
#: The name a restore writes under before it takes the collection's name (with ``replace``).
RESTORING_SUFFIX = "__restoring"
_BATCH = 512


class BackupError(StoreError):
    """A backup or restore that cannot be done as asked (the message says what to do)."""


@dataclass(frozen=True)
class BackupResult:
    collection: str
    items: int
    uploads: int
    path: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup(
    uri: str | os.PathLike[str],
    collection: str,
    dest: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
    token: str | None = None,
    options: ConnectOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BackupResult:
    """Copy ``collection`` (items, vectors, properties) and the uploads its items point to into the folder ``dest``,
    which must not exist or be empty."""
    folder = Path(dest)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(f"{folder} exists and is not an empty folder: name a new folder for the backup")
    uploads = (Path(data_dir) / UPLOADS).resolve()
    options = options or ConnectOptions.from_settings()
    with MilvusStore.open(uri, collection, create=False, token=token, options=options) as store:
        total = store.count()
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        count = files = 0
        for number, batch in enumerate(_batches(store.iter_vectors(batch_size=_BATCH))):
            _write_batch(folder, number, batch)
            for item, _, _ in batch:
                files += _copy_uploads(item, uploads, folder / UPLOADS)
            count += len(batch)
            if on_progress:
                on_progress(count, total)
        manifest = {
            "format": FORMAT,
            "collection": collection,
            "schema_version": schema.SCHEMA_VERSION,
            "encoder": store.encoder.model_dump(mode="json"),
            "bm25": store.supports_bm25,
            "properties": store.properties(),
            "items": count,
            "uploads_dir": str(uploads),
            "uploads": files,
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    logger.info("backed up %s at %s to %s: %d items, %d uploads", collection, uri, folder, count, files)
    return BackupResult(collection, count, files, str(folder))


def read_manifest(dest: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of the backup in ``dest``; raises :class:`BackupError` when there is none or of another format."""
    path = Path(dest) / MANIFEST
    if not path.is_file():
        raise BackupError(f"{Path(dest)} holds no backup ({MANIFEST} missing): name a folder `rag backup` wrote")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} has format {manifest.get('format')!r}; this version reads format {FORMAT}")
    return manifest


def restore(
    dest: str | os.PathLike[str],
    uri: str | os.PathLike[str],
    collection: str | None = None,
    *,
    data_dir: str | os.PathLike[str],
    replace: bool = False,
    token: str | None = None,
    options: ConnectOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BackupResult:
    """Recreate the collection backed up in ``dest`` (as ``collection``, default the name it had) with its
    vectors, properties and uploads, the uploads' paths moved under ``data_dir``. An existing collection of that
    name is refused unless ``replace``; it is then dropped only once the restored copy is complete."""
    folder = Path(dest)
    manifest = read_manifest(folder)
    name = collection or manifest["collection"]
    staging = name + RESTORING_SUFFIX
    options = options or ConnectOptions.from_settings()
    client = Connection(uri, token=token, create=True, options=options)
    try:
        if client.has_collection(name) and not replace:
            raise BackupError.worded(
                f"collection {name!r} exists at {client.uri}: restore under another name ({{new_name}}), or {{replace}}"
            )
        _drop(client, staging)  # a restore a killed run left half made
    finally:
        client.close()
    uploads = (Path(data_dir) / UPLOADS).resolve()
    moved = _Moved(manifest["uploads_dir"], str(uploads))
    files = _restore_uploads(folder / UPLOADS, uploads)
    total = int(manifest["items"])
    try:
        restored = _write_staging(folder, moved, uri, staging, manifest, token, options, on_progress)
        if restored != total:
            raise BackupError(f"restored {restored} of {total} items of {folder}: left as it was; run restore again")
    except Exception:
        with contextlib.suppress(StoreError):  # nothing half made is left behind; the collection is as it was
            _drop_staging(uri, staging, token, options)
        raise
    client = Connection(uri, token=token, create=False, options=options)
    try:
        if client.has_collection(name):
            _drop(client, name)
        _swap(client, staging, name)
    finally:
        client.close()
    logger.info("restored %s from %s as %s: %d items, %d uploads", manifest["collection"], folder, name, total, files)
    return BackupResult(name, restored, files, str(folder))


def _drop_staging(uri: str | os.PathLike[str], staging: str, token: str | None, options: ConnectOptions) -> None:
    client = Connection(uri, token=token, create=False, options=options)
    try:
        _drop(client, staging)
    finally:
        client.close()


def _write_staging(
    folder: Path,
    moved: _Moved,
    uri: str | os.PathLike[str],
    staging: str,
    manifest: dict[str, Any],
    token: str | None,
    options: ConnectOptions,
    on_progress: Callable[[int, int], None] | None,
) -> int:
    """Write the backed-up items into a new collection ``staging``; returns how many it holds."""
    total = int(manifest["items"])
    with MilvusStore.open(
        uri,
        staging,
        encoder_info=EncoderInfo.model_validate(manifest["encoder"]),
        create=True,
        token=token,
        bm25=bool(manifest["bm25"]),
        options=options,
    ) as new:
        written = 0
        for batch in _read_batches(folder, moved):
            written += _write(new, batch)
            if on_progress:
                on_progress(written, total)
        new.flush()
        new.set_properties(manifest["properties"])
        return new.count()


_Entry = tuple[KnowledgeItem, np.ndarray, "np.ndarray | None"]


def _batches(entries: Iterator[_Entry]) -> Iterator[list[_Entry]]:
    batch: list[_Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_batch(folder: Path, number: int, batch: list[_Entry]) -> None:
    stem = folder / f"batch-{number:05d}"
    lines = [item.model_dump_json(exclude={"image": {"thumbnail"}}) for item, _, _ in batch]
    stem.with_suffix(".jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fused = np.stack([vector for _, vector, _ in batch]).astype(np.float32)
    has_image = np.array([picture is not None for _, _, picture in batch])
    image = np.stack([vector if picture is None else picture for _, vector, picture in batch]).astype(np.float32)
    ids = np.array([item.id for item, _, _ in batch])
    np.savez(stem.with_suffix(".npz"), ids=ids, fused=fused, image=image, has_image=has_image)


def _read_batches(folder: Path, moved: _Moved) -> Iterator[list[_Entry]]:
    for lines in sorted(folder.glob("batch-*.jsonl")):
        items = [
            KnowledgeItem.model_validate(moved(json.loads(line)))
            for line in lines.read_text(encoding="utf-8").splitlines()
            if line
        ]
        with np.load(lines.with_suffix(".npz")) as vectors:
            if [str(i) for i in vectors["ids"]] != [item.id for item in items]:
                raise BackupError(f"{lines} and its vectors do not match: the backup is damaged")
            fused, image, has_image = vectors["fused"], vectors["image"], vectors["has_image"]
        yield [(item, fused[i], image[i] if has_image[i] else None) for i, item in enumerate(items)]


class _Moved:
    """Rewrites every path under the backed-up data folder's uploads to the restoring one's."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old.rstrip(os.sep) + os.sep, new.rstrip(os.sep) + os.sep

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(self.old):
            return self.new + value[len(self.old) :]
        if isinstance(value, dict):
            return {key: self(each) for key, each in value.items()}
        if isinstance(value, list):
            return [self(each) for each in value]
        return value


def _paths(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for each in value.values():
            yield from _paths(each)
    elif isinstance(value, list):
        for each in value:
            yield from _paths(each)


def _copy_uploads(item: KnowledgeItem, uploads: Path, into: Path) -> int:
    """Copy the upload files ``item`` points to (not copied yet) under ``into``; returns how many were copied."""
    copied = 0
    prefix = str(uploads) + os.sep
    for text in set(_paths(item.model_dump(mode="json", exclude={"image": {"thumbnail"}}))):
        if not text.startswith(prefix):
            continue
        source = Path(text)
        target = into / source.relative_to(uploads)
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied += 1
    return copied


def _restore_uploads(backed_up: Path, uploads: Path) -> int:
    """Copy the backed-up uploads under ``uploads``; an existing file with other bytes is refused before any copy."""
    files = [path for path in sorted(backed_up.rglob("*")) if path.is_file()] if backed_up.is_dir() else []
    clashes = [
        str(uploads / path.relative_to(backed_up))
        for path in files
        if (uploads / path.relative_to(backed_up)).exists()
        and (uploads / path.relative_to(backed_up)).read_bytes() != path.read_bytes()
    ]
    if clashes:
        raise BackupError(f"{len(clashes)} upload(s) exist with other contents, e.g. {clashes[0]}: left as they are")
    for path in files:
        target = uploads / path.relative_to(backed_up)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return len(files)
