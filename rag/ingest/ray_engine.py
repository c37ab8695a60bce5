"""The Ray engine: the same ingestion as the local one (``rag.ingest.pipeline``), scheduled on a Ray cluster.

The driver reads the sources and splits the new items into blocks (the :class:`~rag.ingest.ledger.Ledger`
drops those already stored, as locally); only the items, with their image paths, travel, as blocks of
plain columns that Ray Data keeps as Arrow arrays and tensors (``rag.ingest.ray_stages``). On the
cluster, Ray Data runs three stages:

* decoding and preprocessing, as Ray tasks on CPU workers, with the encoder's picklable
  ``image_transform`` (no model is loaded there);
* encoding, in a pool of actors that each load the encoder once with the runtime resolved on their own
  machine (``runtime_from_settings``), on a GPU when ``gpus_per_worker`` asks for one;
* writing: to a Milvus server, a pool of writer actors upserts each batch in parallel; to Milvus Lite,
  whose file one process owns, the rows come back to the driver, which upserts them.

Either way the rows are those the local engine writes (same ids and fields, the same ``encode_batch``),
and the ledger keeps the run idempotent and resumable: content ids already stored are skipped, upserts
are by content id, older versions are replaced when the run ends. A killed actor is restarted by Ray
and its batch retried; a killed driver leaves a store that a re-run completes.

Importing this module costs no Ray; :func:`connect` imports it, and says what to install when it is missing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt

from connectors.milvus.schema import Backend
from connectors.milvus.store import MilvusStore
from rag.embeddings.base import ImageTransform
from rag.runtime import DEFAULT_BATCH
from rag.settings import Settings

from . import ray_stages
from .ledger import Ledger, SourceResult, chunks
from .ray_stages import RayEngineError
from .report import IngestReport

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'mmrag[ray]'"
#: CPUs a writer actor reserves: it mostly waits on the Milvus server.
WRITER_CPUS = 0.25
#: Memory a decoding task reserves: its worker process, and the largest image the decompression-bomb guard
#: lets through, decoded (4 bytes a pixel). Reserving it also keeps Ray Data from fusing decoding into the
#: encoder actors.
DECODE_MEMORY = 512 * 2**20 + (Image.MAX_IMAGE_PIXELS or 0) * 4
_REACH_TIMEOUT_S = 5.0
#: The most threads a decoding task runs (the local engine's preprocessing has at most as many workers).
_MAX_DECODE_THREADS = 32
#: The environment variable Ray's C++ logging reads its level from as it starts.
BACKEND_LOG_LEVEL = "RAY_BACKEND_LOG_LEVEL"


class RayOptions(BaseModel):
    """Which Ray cluster the engine runs on, and how many encoder actors with what resources."""

    model_config = ConfigDict(frozen=True)

    address: str | None = Field(
        default=None,
        description="'auto' (the cluster `ray start` runs on this machine), 'ray://host:10001' (Ray Client) or "
        "'host:6379'; None: a local Ray started for the run. A process already connected to Ray keeps that connection.",
    )
    workers: PositiveInt | None = Field(
        default=None,
        description="Encoder actors. None: as many as the cluster's GPUs hold with gpus_per_worker, else one per node.",
    )
    gpus_per_worker: NonNegativeFloat = Field(
        default=0.0, description="GPUs each encoder actor reserves (0.5 puts two actors on a GPU); 0: encode on CPUs."
    )
    cpus_per_worker: PositiveFloat | None = Field(
        default=None,
        description="CPUs each encoder actor reserves; its torch threads are these rounded up. None: 1 beside a GPU, "
        "else all of the smallest node's CPUs but the half one that decoding shares.",
    )


@dataclass(frozen=True)
class Plan:
    """The actors and tasks a run starts, checked against the cluster's resources."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    #: CPUs a decoding task reserves: a whole one beside GPU encoders, where decoding is the CPUs' main
    #: work; half of one beside CPU encoders, which leave it little of the node (it shares the cores).
    decode_cpus: float
    writers: bool  # a writer actor beside each encoder (Milvus server); else the driver writes (Milvus Lite)
    cpus: float
    gpus: float
    #: Whether :func:`connect` started the local Ray this run uses: its caller stops it (:func:`shutdown`) when
    #: done. A cluster it only connected to stays up.
    owns_ray: bool = False
    #: Threads a decoding task decodes its block with: beside CPU encoders, one per core of the smallest node, as
    #: the local engine's preprocessing has (decoding takes what the encoder leaves idle: its half CPU is the
    #: least it gets, not the most); beside GPU encoders one, each task having a CPU of its own.
    decode_threads: int = 1

    @property
    def torch_threads(self) -> int:
        """Threads each encoder actor gives torch: its CPUs, rounded up."""
        return max(1, math.ceil(self.cpus_per_worker - 1e-9))

    def describe(self) -> str:
        gpus = f" and {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        return (
            f"{self.workers} encoder actor(s) of {self.cpus_per_worker:g} CPU{gpus} each, decoding tasks of "
            f"{self.decode_cpus:g} CPU and {self.decode_threads} thread(s), on a cluster of {self.cpus:g} CPUs and "
            f"{self.gpus:g} GPUs"
        )


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or an ``ImportError`` that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError(f"the Ray engine needs Ray Data, which is not installed here: {INSTALL_HINT}") from e
    return ray


def connect(options: RayOptions, backend: Backend, log_file: Path | None = None) -> Plan:
    """Connect to the cluster ``options.address`` names (or start a local Ray) and plan the actors on it
    for a store on ``backend`` (a Milvus server is written by writer actors, Milvus Lite by the driver).

    Ray is quiet unless the caller logs at INFO (``rag -v``): where ``log_file`` is given, Ray's Python log
    lines go there, and its C++ logging in this process (:func:`_native_logs_quiet`) prints nothing below a
    fatal error; its workers' output stays in the session's log folder. Raises ``ImportError`` when Ray is
    missing and :class:`RayEngineError` when the cluster cannot be reached or lacks what is asked (GPUs, CPUs
    left over for decoding).
    """
    ray = import_ray()
    verbose = logger.isEnabledFor(logging.INFO)
    if not verbose:  # Ray Data's per-run notices only where the caller logs ours
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        if log_file is not None:
            _log_to(log_file)
    owns_ray = False
    if not ray.is_initialized():
        if options.address not in (None, "auto"):
            _check_reachable(options.address)
        with _native_logs_quiet(log_file) if log_file is not None and not verbose else nullcontext():
            owns_ray = _init(ray, options.address, verbose)
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    return replace(plan_workers(options, nodes, writers=backend is Backend.SERVER), owns_ray=owns_ray)


def _init(ray: ModuleType, address: str | None, verbose: bool) -> bool:
    """Start a local Ray (no ``address``: returns True, it is ours to stop) or connect to the cluster at ``address``."""
    try:
        if address is None:
            ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=verbose)
            return True
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=verbose)
        return False
    except ConnectionError as e:
        raise RayEngineError.worded(
            f"cannot reach a Ray cluster at {address!r}: {e}. Start one (`ray start --head` on the head "
            "node, `ray start --address HEAD:6379` on the others), or leave {ray_address} out for a local Ray."
        ) from e


@contextmanager
def _native_logs_quiet(path: Path) -> Iterator[None]:
    """While Ray starts (or connects) here: its C++ logging kept to fatal errors, and what it prints meanwhile
    appended to ``path``.

    The C++ logging of this process (the driver's core worker) prints each error to stderr besides its session log,
    and Ray Data's actor pools cause one on every run (``core_worker.cc``: an actor whose constructor arguments are
    in the object store may fail to restart, ray-project/ray#53727). ``RAY_BACKEND_LOG_LEVEL``, read as Ray starts,
    is the only switch, and Ray prints the level it read to stderr: hence the file. A level the user set is kept.
    A local Ray started meanwhile inherits it (its processes log to the session folder); ``rag -v`` changes nothing.
    """
    ours = BACKEND_LOG_LEVEL not in os.environ
    if ours:
        os.environ[BACKEND_LOG_LEVEL] = "fatal"
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
        if ours:
            os.environ.pop(BACKEND_LOG_LEVEL, None)


def shutdown() -> None:
    """Stop the local Ray :func:`connect` started (or leave the cluster it connected to): no Ray process of this
    run outlives it."""
    import_ray().shutdown()


def _log_to(path: Path) -> None:
    """Send the ``ray`` logger's lines (Ray's notices and warnings) to ``path`` instead of the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ray_logger = logging.getLogger("ray")
    for handler in list(ray_logger.handlers):
        ray_logger.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger.addHandler(handler)


def plan_workers(options: RayOptions, nodes: list[dict[str, float]], *, writers: bool) -> Plan:
    """The encoder actors ``options`` asks for on a cluster of these nodes (their Ray resources), with a
    writer actor beside each where ``writers``.

    Defaults: with ``gpus_per_worker``, as many actors as the GPUs hold, one CPU each; without, one actor
    per node that takes all of the smallest node's CPUs but the half that decoding shares (and its writer's).
    """
    cpu_nodes = [node["CPU"] for node in nodes if node.get("CPU")]  # a head node may offer none
    cpus, gpus = sum(cpu_nodes), sum(node.get("GPU", 0.0) for node in nodes)
    writer_cpus = WRITER_CPUS if writers else 0.0
    per_gpu = options.gpus_per_worker
    if not cpus:
        raise RayEngineError("this Ray cluster offers no CPUs (`ray status`), and decoding images needs them")
    if per_gpu > 1 and not float(per_gpu).is_integer():
        raise RayEngineError.worded(
            f"{{gpus_per_worker}} {per_gpu:g}: Ray shares a GPU (0.5) or gives whole ones (2), not {per_gpu:g}"
        )
    if per_gpu:
        if not gpus:
            raise RayEngineError.worded(
                f"{{gpus_per_worker}} {per_gpu:g} asks for GPUs, and this Ray cluster has none ({cpus:g} CPUs; "
                "`ray status` lists its resources). Add GPU nodes, or leave {gpus_per_worker} out to encode on CPUs."
            )
        decode_cpus = 1.0
        per_cpu = options.cpus_per_worker or 1.0
        workers = options.workers or max(1, math.floor(gpus / per_gpu + 1e-9))
        if workers * per_gpu > gpus + 1e-9:
            raise RayEngineError.worded(
                f"{workers} workers of {per_gpu:g} GPU need {workers * per_gpu:g} GPUs, and this Ray cluster has "
                f"{gpus:g}: lower {{workers}} or {{gpus_per_worker}}"
            )
    else:
        decode_cpus = 0.5
        spare = decode_cpus + writer_cpus
        per_cpu = options.cpus_per_worker or max(decode_cpus, min(cpu_nodes) - spare)
        workers = options.workers or len(cpu_nodes)
    left = cpus - workers * (per_cpu + writer_cpus)
    if left < decode_cpus - 1e-9:
        raise RayEngineError.worded(
            f"{workers} encoder actor(s) of {per_cpu:g} CPU{' and their writers' if writers else ''} leave "
            f"{max(left, 0):g} of the cluster's {cpus:g} CPUs for decoding images, which needs {decode_cpus:g}: "
            "lower {workers} or {cpus_per_worker}"
        )
    threads = 1 if per_gpu else min(_MAX_DECODE_THREADS, max(1, int(min(cpu_nodes))))
    return Plan(workers, per_cpu, per_gpu, decode_cpus, writers, cpus, gpus, decode_threads=threads)


def ingest(
    sources: Iterable[SourceResult],
    settings: Settings,
    store: MilvusStore,
    *,
    image_transform: ImageTransform,
    options: RayOptions | None = None,
    on_progress: Callable[[IngestReport], None] | None = None,
    log_file: Path | None = None,
) -> IngestReport:
    """Embed and store every good item of ``sources`` on a Ray cluster; idempotent and safe to re-run after a crash.

    The encoder actors load the encoder ``settings`` describe (``RAG_ENCODER``, ``RAG_WEIGHTS``, ...; the
    files must be readable at the same paths on every node, like the images), and refuse to run when its
    fingerprint is not the one ``store`` records. ``image_transform`` is that encoder's
    (``encoder.image_transform``): it is shipped to the decoding tasks. ``settings.milvus_token`` is
    what writer actors log in to a Milvus server with. ``on_progress(report)`` is called with the report
    so far after each batch. A local Ray this call starts (no ``options.address``, no Ray connected yet) is
    stopped before it returns; Ray's own log lines go to ``log_file`` (see :func:`connect`).
    """
    options = options or RayOptions()
    plan = connect(options, store.backend, log_file)
    try:
        return _run(plan, sources, settings, store, image_transform, on_progress)
    finally:
        if plan.owns_ray:
            shutdown()


def _run(
    plan: Plan,
    sources: Iterable[SourceResult],
    settings: Settings,
    store: MilvusStore,
    image_transform: ImageTransform,
    on_progress: Callable[[IngestReport], None] | None,
) -> IngestReport:
    ray = import_ray()
    ledger = Ledger(store, on_progress)
    batch_size = settings.batch_size or DEFAULT_BATCH["cuda" if plan.gpus_per_worker else "cpu"]
    # Only the items travel, as columns (``ray_stages.block``): the decoding tasks read the images by path.
    blocks, new = [], 0
    for chunk in chunks(sources, batch_size):
        if items := ledger.admit(chunk):
            blocks.append(ray.put(ray_stages.block(items)))
            new += len(items)
    if not plan.gpus_per_worker and settings.device.strip().lower() == "auto":
        settings = settings.model_copy(update={"device": "cpu"})  # no GPU reserved: keep off any the node has
    if blocks:
        logger.info("ray engine: %d new item(s) in %d block(s); %s", new, len(blocks), plan.describe())
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False  # the caller shows its own progress
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # and needs no notice of it
        decoded = decoding(ray.data.from_arrow_refs(blocks), image_transform, plan)
        rows = encoding(decoded, settings, store, plan, batch_size, new)
        if plan.writers:
            rows = writing(rows, settings, store, plan)
        try:
            _consume(rows, ledger, write=not plan.writers)
        except ray.exceptions.RayError as e:  # what was written stays; a rerun goes on from there
            raise RayEngineError(f"the run stopped on the cluster: {_reason(e)}") from e
    return ledger.finish()


def decoding(dataset: Any, transform: ImageTransform, plan: Plan) -> Any:
    """The decoding stage: Ray tasks that add each block's ``pixels`` (``ray_stages.decode``)."""
    shape, dtype = ray_stages.pixel_layout(transform)
    return dataset.map_batches(
        ray_stages.decode,
        fn_kwargs={"transform": transform, "shape": shape, "dtype": dtype, "threads": plan.decode_threads},
        batch_size=None,
        num_cpus=plan.decode_cpus,
        memory=DECODE_MEMORY,
    )


def encoding(
    dataset: Any, settings: Settings, store: MilvusStore, plan: Plan, batch_size: int, expected_items: int
) -> Any:
    """The encoding stage: a pool of encoder actors (Ray Data restarts one that dies and retries its batch)."""
    from ray.data import ActorPoolStrategy

    return dataset.map_batches(
        ray_stages.Encode,
        fn_constructor_kwargs={
            "settings": settings,
            "fingerprint": store.encoder.fingerprint,
            "expected_items": expected_items,
            "threads": plan.torch_threads,
        },
        compute=ActorPoolStrategy(size=plan.workers),
        batch_size=batch_size,
        num_cpus=plan.cpus_per_worker,
        num_gpus=plan.gpus_per_worker or None,
    )


def writing(dataset: Any, settings: Settings, store: MilvusStore, plan: Plan) -> Any:
    """The writing stage, for a Milvus server: a pool of writer actors beside the encoders."""
    from ray.data import ActorPoolStrategy

    return dataset.map_batches(
        ray_stages.Write,
        fn_constructor_kwargs={
            "uri": store.uri,
            "collection": store.collection,
            "token": settings.milvus_token_value,
            "encoder": store.encoder,
        },
        compute=ActorPoolStrategy(size=plan.workers),
        batch_size=None,
        num_cpus=WRITER_CPUS,
    )


def _consume(dataset: Any, ledger: Ledger, *, write: bool) -> None:
    """Account for the rows as they come back: failures reported, vectors written here (``write``) or counted."""
    recorded = False
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        if len(batch["ready_at"]):
            ledger.encoder_ready(float(batch["ready_at"].min()))
        if not recorded and len(batch["runtime"]):
            ledger.record_runtime(json.loads(batch["runtime"][0]))
            recorded = True
        items = ray_stages.items_of(batch)
        ok = ray_stages.good_rows(batch)
        for i in np.flatnonzero([bool(error) for error in batch["error"]]):
            ledger.failed(items[i], str(batch["error"][i]))
        if not len(ok):
            ledger.progress()
        elif write:
            ledger.write([items[i] for i in ok], batch["fused"][ok], batch["image_vector"][ok])
        else:
            ledger.written(len(ok))


def _reason(error: Exception) -> str:
    """The error a Ray failure carries, in one line (Ray's own message holds the whole remote traceback)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _check_reachable(address: str) -> None:
    """Fail fast, naming the address, where Ray itself would retry for minutes."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    host, port = parts.hostname, parts.port
    if not host or port is None:
        raise RayEngineError.worded(f"{{ray_address}} {address!r}: use auto, ray://host:10001 or host:6379")
    try:
        socket.create_connection((host, port), timeout=_REACH_TIMEOUT_S).close()
    except OSError as e:
        raise RayEngineError(
            f"cannot reach the Ray cluster at {address} ({e}). Is the head node up (`ray start --head`) and its "
            "port open from here? Ray Client listens on 10001, the cluster itself on 6379."
        ) from e
