"""Which warm model process a command may use.

A process serves one set of model settings (the ``RAG_*`` values and flags that choose the encoder, its weights,
device, dtype and runtime, and the cross-encoder reranker it also keeps loaded) in one data folder. Its key adds
each weight file's path, size and modification time, so a rebuilt checkpoint never gets the old process; its
stamp (the package version and the newest source file's time) tells a process started by another version of the
code, which is then replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag import __version__

#: The settings that make the model a process keeps loaded; every other setting travels with each request.
MODEL_SETTINGS = (
    "encoder",
    "weights",
    "text_model",
    "vision_config",
    "device",
    "dtype",
    "compile",
    "batch_size",
    "workers",
    "preprocess",
    "reranker",
)
#: The flags of the warm commands that set one of them.
MODEL_FLAGS = {"--encoder": "encoder", "--weights": "weights", "--reranker": "reranker"}
#: Other variables that change what loads, or how it runs.
MODEL_ENVIRONMENT = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CACHE_HOME", "OMP_NUM_THREADS")
#: The settings naming files or folders on disk, whose contents are part of the key.
_PATHS = ("weights", "text_model", "vision_config", "reranker")
_SOURCES = [Path(__file__).resolve().parents[3] / name for name in ("rag", "connectors")]


@dataclass(frozen=True)
class ProcessKey:
    """The model settings of one command, where they were read, and the weight files they name."""

    settings: dict[str, str | None]
    environment: dict[str, str | None]
    files: tuple[tuple[str, int, int], ...]
    data_dir: Path

    @property
    def digest(self) -> str:
        """A short name for the process: the same for equal keys, different for any other."""
        text = json.dumps([self.settings, self.environment, self.files], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def folder(self) -> Path:
        """Where the process keeps its socket, state, lock, clients and log."""
        return self.data_dir / ".warm" / self.digest

    def describe(self) -> str:
        """The model in a few words, for ``rag ps``."""
        named = self.settings.get("weights") or f"{self.settings.get('encoder') or 'visualized-bge'} default weights"
        return str(named)


def key_of(argv: Sequence[str], environ: Mapping[str, str], cwd: Path) -> ProcessKey:
    """The key of the process ``rag argv`` may use, read from the environment and the command's own flags."""
    settings: dict[str, str | None] = {name: environ.get(f"RAG_{name.upper()}") for name in MODEL_SETTINGS}
    for i, arg in enumerate(argv):
        flag, equals, value = arg.partition("=")
        if flag in MODEL_FLAGS:
            settings[MODEL_FLAGS[flag]] = value if equals else (argv[i + 1] if i + 1 < len(argv) else None)
    files: list[tuple[str, int, int]] = []
    for name in _PATHS:
        if settings[name]:
            files.extend(_files(_absolute(str(settings[name]), cwd)))
    data_dir = _absolute(environ.get("RAG_DATA_DIR") or "rag_data", cwd)
    environment = {name: environ.get(name) for name in MODEL_ENVIRONMENT}
    return ProcessKey(settings, environment, tuple(files), data_dir)


def _absolute(value: str, cwd: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else cwd / path


def _files(path: Path) -> list[tuple[str, int, int]]:
    """``path`` (a file) or the files of ``path`` (a model folder), each with its size and modification time."""
    try:
        if path.is_dir():
            return [_stat(child) for child in sorted(path.iterdir()) if child.is_file()]
        return [_stat(path)] if path.is_file() else []
    except OSError:
        return []


def _stat(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def code_stamp() -> str:
    """The package version and the modification time of its newest source file: another value means other code."""
    newest = 0
    for root in _SOURCES:
        for folder, _, names in os.walk(root):
            for name in names:
                if name.endswith(".py"):
                    newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
    return f"{__version__}+{newest}"
