"""How the store reaches Milvus: the URI resolved, the backend known, every call bounded and its failures named.

A Milvus Lite path (``*.db``) is served by a shared server process (``lite_server``) unless the ``in-process``
mode is asked for; ``http(s)://`` is a Milvus server, or a standalone ``milvus-lite server``, which is still
Lite (it says so in its version). Every call carries the timeout; a server that cannot be reached raises
:class:`StoreUnavailableError`; a collection that a restarted server left released is loaded again and the call
retried once (after the shared Lite server of this folder is started again, if it died).
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from pymilvus import AnnSearchRequest, CollectionSchema, MilvusClient, MilvusException
from pymilvus.client.abstract import BaseRanker
from pymilvus.milvus_client.index import IndexParams

from connectors.milvus import lite_server
from connectors.milvus.errors import StoreError, StoreLockedError, StoreUnavailableError
from connectors.milvus.paths import resolve
from connectors.milvus.schema import Backend

logger = logging.getLogger(__name__)

LiteMode = Literal["shared", "in-process"]
BackendMode = Literal["auto", "lite", "server"]
# Calls that need the collection loaded: after a restart the server holds it released.
_NEEDS_LOAD = frozenset({"search", "hybrid_search", "query", "get", "query_iterator"})
_UNREACHABLE = ("server unavailable", "UNAVAILABLE", "DEADLINE_EXCEEDED", "Retry timeout", "Deadline Exceeded")


class _Default(enum.Enum):
    TIMEOUT = "the store's timeout"


#: A call's ``timeout`` when none is given: the store's own (``ConnectOptions.timeout``).
STORE_TIMEOUT: Final = _Default.TIMEOUT
#: Seconds a call may take: the store's own (:data:`STORE_TIMEOUT`), a number, or None for no limit.
Timeout: TypeAlias = float | None | Literal[_Default.TIMEOUT]

# In-process Milvus Lite runs one server per data folder in this process; the last store closed on a folder
# stops it, so that other processes can open the folder.
_in_process_users: dict[str, int] = {}
_in_process_lock = threading.Lock()


@dataclass(frozen=True)
class ConnectOptions:
    """``timeout``: seconds per Milvus call; ``lite``: how a ``*.db`` path is opened; ``idle``: seconds a
    shared Lite server started here outlives its last user; ``backend``: the code path, found from the server
    (``auto``) or forced (see ``rag.settings.Settings``)."""

    timeout: float = 60.0
    lite: LiteMode = "shared"
    idle: float = 15.0
    backend: BackendMode = "auto"

    @classmethod
    def from_settings(cls, settings: Any = None) -> ConnectOptions:
        """The options ``settings`` name (default: ``Settings()``, i.e. the ``RAG_*`` environment)."""
        if settings is None:
            from rag.settings import Settings

            settings = Settings()
        return cls(
            timeout=settings.milvus_timeout,
            lite=settings.milvus_lite,
            idle=settings.milvus_lite_idle,
            backend=settings.milvus_backend,
        )


def quiet_logs(verbose: bool = False) -> None:
    """Keep pymilvus's and Milvus Lite's logs (tracebacks of every failed call) out of the terminal unless
    ``verbose``: the store raises errors that say what happened."""
    import pymilvus  # noqa: F401  (its import configures its loggers; set them after)

    level = logging.INFO if verbose else logging.CRITICAL
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "milvus_lite"):
        logging.getLogger(name).setLevel(level)


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the server could not be reached or did not answer in time."""
    if isinstance(exc, StoreUnavailableError):
        return True
    text = f"{getattr(exc, 'code', '')} {getattr(exc, 'message', '')} {exc}"
    return isinstance(exc, MilvusException) and any(marker in text for marker in _UNREACHABLE)


def _is_released(exc: MilvusException) -> bool:
    return exc.code == 101 or "released" in str(exc.message) or "not loaded" in str(exc.message)


#: gRPC waits longer and longer between reconnection attempts (up to two minutes), so a store back after an outage
#: of a few minutes was first answered half a minute later; capped, it is answered within two seconds.
#: Each channel keeps its own subchannels: from gRPC's process-wide pool, a client opened after a server came back
#: was handed the dead server's failed subchannel and refused at once ("Fail connecting to server").
_RECONNECT_BACKOFF = {
    "grpc.initial_reconnect_backoff_ms": 500,
    "grpc.min_reconnect_backoff_ms": 500,
    "grpc.max_reconnect_backoff_ms": 2000,
    "grpc.use_local_subchannel_pool": 1,
}


class Connection:
    """A ``MilvusClient`` on one store whose calls (``connection.search(...)``, as on the client, for the calls
    the store makes) carry the timeout, raise :class:`StoreUnavailableError` when the server cannot be reached,
    and load a collection a restarted server released, retrying once."""

    def __init__(self, uri: str | os.PathLike[str], *, token: str | None, create: bool, options: ConnectOptions):
        self.uri, lite_path = resolve(uri, create=create)
        if lite_path and options.backend == "server":
            raise StoreError(
                f"RAG_MILVUS_BACKEND=server needs a Milvus server's URI (http://host:19530), and {self.uri} is a "
                "Milvus Lite path: point RAG_MILVUS_URI at a server, or set RAG_MILVUS_BACKEND=auto"
            )
        self.options = options
        self._token = token or ""
        self._lease: lite_server.Lease | None = None
        self._in_process = lite_path and options.lite == "in-process"
        self.address = self._address() if lite_path else self.uri
        try:
            self._client = self._new_client()
            self.backend = (
                Backend(options.backend)
                if options.backend != "auto"
                else Backend.LITE
                if lite_path
                else _backend_of(self._client, self.uri, options.timeout)
            )
        except BaseException:
            self._release()
            raise
        if self.backend is Backend.LITE:
            # Lite keeps no MVCC timestamps, so every query iterator warns that it uses the client's clock
            # instead: expected there, and noise in every ingest run.
            logging.getLogger("pymilvus.orm.iterator").setLevel(logging.ERROR)

    @property
    def client(self) -> MilvusClient:
        """The ``MilvusClient`` itself (its calls are not bounded nor translated)."""
        return self._client

    # The MilvusClient calls the store makes, each bounded (``timeout``: the store's own unless given; None
    # waits without a limit) and translated by ``_call``.
    def has_collection(self, collection: str, *, timeout: Timeout = STORE_TIMEOUT) -> bool:
        return bool(self._call("has_collection", collection, timeout))

    def list_collections(self, *, timeout: Timeout = STORE_TIMEOUT) -> list[str]:
        return list(self._call("list_collections", None, timeout))

    def describe_collection(self, collection: str, *, timeout: Timeout = STORE_TIMEOUT) -> dict[str, Any]:
        return dict(self._call("describe_collection", collection, timeout))

    def create_collection(
        self,
        collection: str,
        *,
        schema: CollectionSchema,
        consistency_level: str = "Strong",
        properties: dict[str, Any] | None = None,
        index_params: IndexParams | None = None,
        timeout: Timeout = STORE_TIMEOUT,
    ) -> None:
        extra: dict[str, Any] = {"properties": properties} if properties else {}
        self._call(
            "create_collection",
            collection,
            timeout,
            schema=schema,
            consistency_level=consistency_level,
            index_params=index_params,
            **extra,
        )

    def drop_collection(self, collection: str, *, timeout: Timeout = STORE_TIMEOUT) -> None:
        self._call("drop_collection", collection, timeout)

    def rename_collection(self, collection: str, new_name: str, *, timeout: Timeout = STORE_TIMEOUT) -> None:
        self._call("rename_collection", collection, timeout, new_name=new_name)

    def load_collection(self, collection: str, *, timeout: Timeout = STORE_TIMEOUT) -> None:
        self._call("load_collection", collection, timeout)

    def release_collection(self, collection: str, *, timeout: Timeout = STORE_TIMEOUT) -> None:
        self._call("release_collection", collection, timeout)

    def alter_collection_properties(
        self, collection: str, *, properties: dict[str, Any], timeout: Timeout = STORE_TIMEOUT
    ) -> None:
        self._call("alter_collection_properties", collection, timeout, properties=properties)

    def create_index(
        self, collection: str, index_params: IndexParams, *, sync: bool = True, timeout: Timeout = STORE_TIMEOUT
    ) -> None:
        self._call("create_index", collection, timeout, index_params=index_params, sync=sync)

    def drop_index(self, collection: str, index_name: str, *, timeout: Timeout = STORE_TIMEOUT) -> None:
        self._call("drop_index", collection, timeout, index_name=index_name)

    def describe_index(self, collection: str, index_name: str, *, timeout: Timeout = STORE_TIMEOUT) -> dict[str, Any]:
        return dict(self._call("describe_index", collection, timeout, index_name=index_name))

    def upsert(
        self,
        collection: str,
        data: list[dict[str, Any]],
        *,
        partial_update: bool = False,
        timeout: Timeout = STORE_TIMEOUT,
    ) -> None:
        extra: dict[str, Any] = {"partial_update": True} if partial_update else {}
        self._call("upsert", collection, timeout, data=data, **extra)

    def delete(self, collection: str, *, filter: str, timeout: Timeout = STORE_TIMEOUT) -> None:
        self._call("delete", collection, timeout, filter=filter)

    def flush(self, collection: str, *, timeout: Timeout = STORE_TIMEOUT) -> None:
        self._call("flush", collection, timeout)

    def query(
        self,
        collection: str,
        *,
        filter: str,
        output_fields: list[str],
        limit: int | None = None,
        timeout: Timeout = STORE_TIMEOUT,
    ) -> list[dict[str, Any]]:
        extra: dict[str, Any] = {"limit": limit} if limit is not None else {}
        return list(self._call("query", collection, timeout, filter=filter, output_fields=output_fields, **extra))

    def query_iterator(
        self,
        collection: str,
        *,
        batch_size: int,
        output_fields: list[str],
        filter: str = "",
        timeout: Timeout = STORE_TIMEOUT,
    ) -> Pages:
        """The rows matching ``filter``, a page at a time (whose failures are the store's errors too)."""
        iterator = self._call(
            "query_iterator", collection, timeout, batch_size=batch_size, filter=filter, output_fields=output_fields
        )
        return Pages(iterator, self._translate)

    def search(
        self,
        collection: str,
        *,
        data: list[Any],
        anns_field: str,
        limit: int,
        filter: str,
        output_fields: list[str],
        search_params: dict[str, Any],
        timeout: Timeout = STORE_TIMEOUT,
    ) -> list[list[dict[str, Any]]]:
        """One list of hits (``id``, ``distance``, ``entity``) per query in ``data``."""
        result = self._call(
            "search",
            collection,
            timeout,
            data=data,
            anns_field=anns_field,
            limit=limit,
            filter=filter,
            output_fields=output_fields,
            search_params=search_params,
        )
        hits: list[list[dict[str, Any]]] = result
        return hits

    def close(self) -> None:
        self._client.close()
        self._release()

    def hybrid_search(
        self,
        collection: str,
        *,
        reqs: list[AnnSearchRequest],
        ranker: BaseRanker,
        limit: int,
        output_fields: list[str],
        timeout: Timeout = STORE_TIMEOUT,
    ) -> list[list[dict[str, Any]]]:
        """Several searches, one per request, fused by ``ranker`` on the server: one list of hits per query."""
        result = self._call(
            "hybrid_search", collection, timeout, reqs=reqs, ranker=ranker, limit=limit, output_fields=output_fields
        )
        hits: list[list[dict[str, Any]]] = result
        return hits

    def _call(self, name: str, collection: str | None, timeout: Timeout, **kwargs: Any) -> Any:
        """``MilvusClient.<name>(collection, **kwargs)`` within ``timeout``: a collection a restarted server released is
        loaded again and the call retried once, as is a call the server did not answer once it answers again."""
        kwargs["timeout"] = self.options.timeout if timeout is STORE_TIMEOUT else timeout
        args = (collection,) if collection is not None else ()
        try:
            return getattr(self._client, name)(*args, **kwargs)
        except MilvusException as exc:
            if name in _NEEDS_LOAD and _is_released(exc):
                logger.info("collection %s was released (the server restarted); loading it again", collection)
            elif is_unreachable(exc):
                self._reconnect(exc, kwargs["timeout"] or self.options.timeout)
            else:
                raise self._translate(exc) from exc
        try:
            if name in _NEEDS_LOAD and collection:
                self._client.load_collection(collection, timeout=self.options.timeout)
            return getattr(self._client, name)(*args, **kwargs)
        except MilvusException as exc:
            raise self._translate(exc) from exc

    def _reconnect(self, cause: MilvusException, timeout: float) -> None:
        """Wait, within ``timeout``, until the server answers again (gRPC drops a connection the server found idle
        too long, and refuses calls for a moment after); the shared Lite server of this folder, if it died, is
        started again first (or the one another user started is found)."""
        try:
            if self._lease is not None:
                logger.warning("the Milvus Lite server for %s went away; starting it again", self.uri)
                self._release()
                self.address = self._address()
                self._client.close()
                self._client = self._new_client()
            else:
                self._until_ready(timeout)
        except (StoreError, MilvusException) as exc:
            raise self._translate(cause) from exc

    def _until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._client.get_server_version(timeout=timeout)
                return
            except MilvusException as exc:
                if not is_unreachable(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _translate(self, exc: MilvusException) -> Exception:
        if not is_unreachable(exc):
            same: Exception = exc
            return same
        via = f"at {self.address}: " if self.address != self.uri else ""
        reason = f"{via}{exc.message}"
        return StoreUnavailableError(f"the Milvus store at {self.uri} cannot be reached ({reason})", self.uri, reason)

    def _address(self) -> str:
        """The URI the client connects to for a Lite path: the shared server's, or the path itself (in-process)."""
        if self._in_process:
            lite_server.quiet_unserved_calls()  # the server runs here: its logs reach the user's terminal
            with _in_process_lock:
                _in_process_users[self.uri] = _in_process_users.get(self.uri, 0) + 1
            return self.uri
        try:
            self._lease = lite_server.acquire(self.uri, idle=self.options.idle)
        except lite_server.LiteServerError as exc:
            if "DataDirLockedError" in str(exc):
                raise StoreLockedError(_locked_message(self.uri)) from exc
            raise StoreError(str(exc)) from exc
        return self._lease.uri

    def _new_client(self) -> MilvusClient:
        """A client on ``address`` that has answered once: gRPC refuses the first calls to a shared server that
        just took over the port of one that died (the channel backs off), so wait for it, within the timeout."""
        deadline = time.monotonic() + self.options.timeout
        while True:
            try:
                self._client = MilvusClient(
                    uri=self.address, token=self._token, timeout=self.options.timeout, grpc_options=_RECONNECT_BACKOFF
                )
                if self._lease is not None:
                    self._until_ready(self.options.timeout)
                return self._client
            except MilvusException as exc:
                if self._in_process and _lite_locked(self.uri):
                    raise StoreLockedError(_locked_message(self.uri)) from exc
                if self._lease is None or not is_unreachable(exc) or time.monotonic() > deadline:
                    raise (
                        self._translate(exc)
                        if is_unreachable(exc)
                        else StoreError(f"cannot connect to Milvus at {self.uri}: {exc.message}")
                    ) from exc
                time.sleep(0.2)

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        elif self._in_process and self.address == self.uri:
            with _in_process_lock:
                _in_process_users[self.uri] -= 1
                last = _in_process_users[self.uri] == 0
                if last:
                    del _in_process_users[self.uri]
            if last:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)
            self.address = ""


class Pages:
    """A query iterator whose pages fail with the store's errors (``StoreUnavailableError``), not pymilvus's."""

    def __init__(self, iterator: Any, translate: Callable[[MilvusException], Exception]) -> None:
        self._iterator = iterator
        self._translate = translate

    def next(self) -> list[dict[str, Any]]:
        try:
            page: list[dict[str, Any]] = self._iterator.next()
        except MilvusException as exc:
            raise self._translate(exc) from exc
        return page

    def close(self) -> None:
        self._iterator.close()


def _backend_of(client: MilvusClient, uri: str, timeout: float) -> Backend:
    """Lite for a ``milvus-lite server`` (its version says so), else a Milvus server."""
    try:
        version = str(client.get_server_version(timeout=timeout))
    except MilvusException as exc:
        if is_unreachable(exc):
            message = f"the Milvus store at {uri} cannot be reached ({exc.message})"
            raise StoreUnavailableError(message, uri, exc.message) from exc
        return Backend.SERVER
    return Backend.LITE if version.startswith("milvus_lite") else Backend.SERVER


def _locked_message(path: str) -> str:
    return (
        f"Milvus Lite data at {path} is in use by another process (Milvus Lite allows one process per folder, and "
        "that one opened it in-process, RAG_MILVUS_LITE=in-process). Stop that process, use another path, or let "
        "every process share the folder's server (RAG_MILVUS_LITE=shared, the default)."
    )


def _lite_locked(path: str) -> bool:
    """Whether another process holds the Lite data folder (checked by trying to open it)."""
    from milvus_lite import DataDirLockedError, MilvusLite

    try:
        MilvusLite(path).close()
    except DataDirLockedError:
        return True
    except Exception:  # any other failure is reported by the caller with the original error
        return False
    return False
