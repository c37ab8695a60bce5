"""Scoped API tokens, kept under the data folder as salted scrypt hashes; never in clear.

A token reads ``rag_<id>_<secret>``: the id (public, stored) finds its record, the secret is checked
against the record's scrypt hash. A token checked once is remembered in memory (by its SHA-256), so a
request pays one dictionary look-up and one ``stat`` of the tokens file, whose change (a token added or
revoked by ``rag tokens`` or the API) makes the next check read it again: a revoked token fails at once.
Last use is written to a second file at most once a minute per token, so checking never rewrites the
tokens themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from filelock import FileLock

from rag.errors import RagError

TOKENS_FILE = "tokens.json"
LAST_USE_FILE = "tokens-last-use.json"
#: scrypt's cost: 16 MiB and some 50 ms per hash on a server core; paid once per token and process.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Tenant names: letters, digits, '_' and '-' (nothing a Milvus filter or a path reads as syntax).
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_LAST_USE_EVERY = 60.0


class TokenError(RagError, ValueError):
    """A token operation refused: a bad name, scope or tenant, a name taken, or no such token."""


class Scope(str, Enum):
    """What a token may do; each scope allows everything the ones before it allow."""

    READ = "read"  # search, ask, chat, view items and images, stats
    WRITE = "write"  # also ingest and delete
    ADMIN = "admin"  # also manage tokens over the API

    def allows(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's name (None when the server asks for none), scope and tenant (None: all)."""

    name: str | None
    scope: Scope
    tenant: str | None = None


#: Who a request acts as on a server that asks for no token.
ANONYMOUS = Principal(None, Scope.ADMIN)


@dataclass(frozen=True)
class TokenRecord:
    """A stored token: everything but its secret, whose salted hash only is kept."""

    name: str
    id: str
    scope: Scope
    tenant: str | None
    created: str
    salt: str
    hash: str

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.scope, self.tenant)

    def shown(self, last_used: str | None) -> dict[str, Any]:
        """What ``rag tokens list`` and ``GET /api/tokens`` show: no secret, no hash."""
        return {
            "name": self.name,
            "scope": self.scope.value,
            "tenant": self.tenant,
            "created": self.created,
            "last_used": last_used,
        }


def check_tenant(tenant: str) -> str:
    """``tenant`` when it is a valid tenant name; a ``TokenError`` saying what is allowed otherwise."""
    if not _TENANT.fullmatch(tenant):
        raise TokenError(
            f"tenant {tenant!r} is not a valid name: use 1-128 letters, digits, '_' or '-', starting with a letter "
            "or digit"
        )
    return tenant


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` so that a reader never sees half of it; the file is the owner's only (mkstemp's 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TokenStore:
    """The tokens of one data folder (``tokens.json``), shared by every process that uses the folder."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / TOKENS_FILE
        self._last_use_path = Path(data_dir) / LAST_USE_FILE
        self._lock = FileLock(str(self.path) + ".lock")
        self._memory = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._records: dict[str, TokenRecord] = {}  # by id
        self._verified: dict[bytes, str] = {}  # SHA-256 of a checked token -> its record's id
        self._last_use: dict[str, float] = {}  # id -> when its last use was written (monotonic)

    # -- reading --------------------------------------------------------------------------

    def records(self) -> list[TokenRecord]:
        """Every token, oldest first."""
        self._refresh()
        return sorted(self._records.values(), key=lambda r: (r.created, r.name))

    def configured(self) -> bool:
        """Whether any token exists (a server then asks every request for one)."""
        self._refresh()
        return bool(self._records)

    def listing(self) -> list[dict[str, Any]]:
        """Every token as ``rag tokens list`` shows it, with its last use."""
        used = self._read_last_use()
        return [record.shown(used.get(record.id)) for record in self.records()]

    def remembered(self, token: str) -> bool:
        """Whether ``token`` was checked already (its next check is a look-up, not a scrypt hash)."""
        with self._memory:
            return _digest(token) in self._verified

    def verify(self, token: str) -> Principal | None:
        """Who ``token`` acts as, or None when it is no current token (unknown, revoked, or malformed)."""
        self._refresh()
        digest = _digest(token)
        with self._memory:
            known = self._verified.get(digest)
            record = self._records.get(known) if known is not None else None
        if record is None:
            record = self._check(token)
            if record is None:
                return None
            with self._memory:
                self._verified[digest] = record.id
        self._note_use(record.id)
        return record.principal

    def _check(self, token: str) -> TokenRecord | None:
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        record = self._records.get(token_id) if prefix == "rag" and secret else None
        if record is None:
            return None
        expected = bytes.fromhex(record.hash)
        return record if hmac.compare_digest(_hash(secret, bytes.fromhex(record.salt)), expected) else None

    def _refresh(self) -> None:
        """Read the tokens file again when it changed (another process added or revoked a token)."""
        try:
            st = os.stat(self.path)
            seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            seen = None
        if seen == self._seen:
            return
        records = {r.id: r for r in self._read()} if seen is not None else {}
        with self._memory:
            self._records, self._seen = records, seen
            self._verified = {d: i for d, i in self._verified.items() if i in records}

    def _read(self) -> list[TokenRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [TokenRecord(**{**r, "scope": Scope(r["scope"])}) for r in data["tokens"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as e:
            raise TokenError(
                f"{self.path} cannot be read ({e}); restore it, or remove it and add the tokens again"
            ) from e

    # -- changing ---------------------------------------------------------------------------

    def add(self, name: str, scope: Scope | str, tenant: str | None = None) -> tuple[TokenRecord, str]:
        """A new token: its record and the token itself, which is shown this once and never kept."""
        if not _NAME.fullmatch(name):
            raise TokenError(f"token name {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-'")
        try:
            scope = Scope(scope)
        except ValueError:
            raise TokenError(f"scope {scope!r} is not one of: read, write, admin") from None
        if tenant is not None:
            check_tenant(tenant)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        token_id = secrets.token_hex(6)
        record = TokenRecord(name, token_id, scope, tenant, _now(), salt.hex(), _hash(secret, salt).hex())
        with self._changing() as records:
            if any(r.name == name for r in records):
                raise TokenError(f"a token named {name!r} exists: revoke it first, or choose another name")
            records.append(record)
        return record, f"rag_{token_id}_{secret}"

    def revoke(self, name: str) -> TokenRecord:
        """Remove the token ``name``; every process refuses it from its next check."""
        with self._changing() as records:
            found = [r for r in records if r.name == name]
            if not found:
                known = ", ".join(r.name for r in records) or "none"
                raise TokenError(f"no token named {name!r} (tokens: {known})")
            records.remove(found[0])
        return found[0]

    @contextmanager
    def _changing(self) -> Iterator[list[TokenRecord]]:
        """The tokens, read under the folder's lock and written back (0600, atomically) if the block succeeds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            records = self._read()
            yield records
            tokens = [{**r.__dict__, "scope": r.scope.value} for r in records]
            _write_json(self.path, {"version": 1, "tokens": tokens})

    # -- last use -----------------------------------------------------------------------------

    def _read_last_use(self) -> dict[str, str]:
        try:
            data = json.loads(self._last_use_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _note_use(self, token_id: str) -> None:
        now = time.monotonic()
        with self._memory:
            written = self._last_use.get(token_id)
            if written is not None and now - written < _LAST_USE_EVERY:
                return
            self._last_use[token_id] = now
        with self._lock:
            used = self._read_last_use()
            used[token_id] = _now()
            _write_json(self._last_use_path, used)
