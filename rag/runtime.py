"""Where and how encoders run: device, dtype, batch size, preprocessing workers and compilation.

Resolved in one place, from the settings and the hardware, then passed down: encoders, ingestion
and the server never probe the hardware themselves, and a collection's fingerprint never depends
on the result (vectors written on a GPU in bfloat16 stay comparable with float32 ones on a laptop).

``auto`` picks, in order: a CUDA GPU (bfloat16 where it supports it, else float16), Apple's
``mps`` (float16), else the CPU, in bfloat16 only where bfloat16 matrix products actually run
natively (``avx512_bf16``/``amx_bf16`` *and* a tiny timed product agrees: torch emulates bfloat16
elsewhere, about 100x slower than float32), otherwise float32. An explicit device or dtype always
wins; one that this machine cannot run is a :class:`RuntimeUnavailableError` naming what to set.

Importing this module does not import torch; :func:`probe_hardware` does.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from rag.errors import RagError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

AUTO = "auto"
DTYPES = ("float32", "bfloat16", "float16")
#: CPU flags (Linux ``/proc/cpuinfo``) of native bfloat16 matrix units.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: bfloat16 counts as native when a small product takes at most this many times the float32 time:
#: emulated it measured 50-60x slower, natively within 2x (timings of a busy machine fall between).
BF16_NATIVE_MAX_SLOWDOWN = 8.0
#: ``compile="auto"`` compiles an ingest only past this many items: compiling takes a minute or more,
#: and it saves a fraction of a millisecond per item (benchmarks/gpu.py prints the break-even).
COMPILE_MIN_ITEMS = 500_000
#: Why ``compile="auto"`` never compiles on a CPU: one layer of each tower, bf16, batch 16, compiled by inductor with
#: frozen weights, ran 1.5% faster than eager after 400 s of compiling (a shared 2-core Xeon with AMX, README).
CPU_COMPILE_WHY = "where inductor measured within 2% of eager after minutes of compiling"
#: ``preprocess="auto"`` uses worker processes on CUDA machines with at least this many cores.
PROCESSES_MIN_CORES = 4
#: On a CPU, one preprocessing thread per this many cores: decoding and resizing a 640x480 JPEG takes about 5 ms of
#: one core, where the model spends about 0.2 s of core time per item in bf16 on AMX and 1 s in float32 (README,
#: Performance), so one thread keeps ahead of many cores, and more would only take turns with the model's threads
#: (benchmarks/levers.py, the "files" levers; cpu_ingest.py --splits on the real command).
CORES_PER_CPU_WORKER = 8
#: Items per forward pass by device kind, when the settings do not say.
DEFAULT_BATCH = {"cpu": 16, "cuda": 256, "mps": 32}
_MAX_WORKERS = 32

Purpose = Literal["query", "batch", "serve"]


class RuntimeUnavailableError(RagError, ValueError):
    """The requested device or dtype cannot run on this machine; the message says what to set instead."""


@dataclass(frozen=True)
class CudaDevice:
    name: str
    bf16: bool
    memory_gib: float


@dataclass(frozen=True)
class Hardware:
    """What this machine offers, as torch sees it (tests build their own)."""

    cuda: tuple[CudaDevice, ...] = ()
    mps: bool = False
    cpu_flags: frozenset[str] | None = None  # None where they cannot be read (not Linux)
    #: float32 time / bfloat16 time of a small matrix product; None when not measured.
    cpu_bf16_speed: float | None = None
    cores: int = 1
    cuda_build: str | None = None  # torch.version.cuda; None for a CPU-only torch
    omp_threads: int | None = None  # OMP_NUM_THREADS, where the environment sets torch's threads

    @property
    def cpu_bf16_native(self) -> tuple[bool, str]:
        """Whether bfloat16 matrix products run natively on the CPU, and why that is the answer."""
        if self.cpu_flags is not None and not set(CPU_BF16_FLAGS) & self.cpu_flags:
            return False, f"the CPU lacks {' and '.join(CPU_BF16_FLAGS)}, so torch would emulate bfloat16"
        if self.cpu_bf16_speed is not None and self.cpu_bf16_speed < 1 / BF16_NATIVE_MAX_SLOWDOWN:
            return False, (
                f"a bfloat16 matrix product ran {1 / self.cpu_bf16_speed:.0f}x slower than float32 here "
                "(emulated: a CPU without bf16 units, or oneDNN limited to an older instruction set)"
            )
        if self.cpu_flags is None and self.cpu_bf16_speed is None:
            return False, "the CPU's bfloat16 support is unknown"
        found = [f for f in CPU_BF16_FLAGS if self.cpu_flags and f in self.cpu_flags]
        return True, f"the CPU has {'/'.join(found) or 'fast bfloat16'} and a bfloat16 product ran at native speed"


@dataclass(frozen=True)
class Runtime:
    """The resolved choice; ``reason`` says why, for logs, ``rag stats`` and the server's health."""

    device: str
    dtype: str
    batch_size: int
    workers: int
    threads: int | None = None  # torch's intra-op threads; None: torch's own choice
    compile: bool = False
    processes: bool = False  # preprocess files in worker processes rather than threads
    reason: str = ""

    @property
    def device_kind(self) -> str:
        return self.device.split(":", 1)[0]

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    def describe(self) -> str:
        compiled = ", torch.compile" if self.compile else ""
        pool = "processes" if self.processes else "threads"
        torch_threads = f", {self.threads} torch threads" if self.threads else ""
        workers = f"{self.workers} preprocessing {pool}{torch_threads}{compiled}"
        return f"{self.device} {self.dtype}, batch {self.batch_size}, {workers}: {self.reason}"

    def apply_threads(self) -> None:
        """Set torch's intra-op threads to the chosen number (process-wide; nothing when the choice is torch's)."""
        if self.threads:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_batch_size(self, batch_size: int) -> Runtime:
        return replace(self, batch_size=batch_size)


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU feature flags Linux reports (x86 ``flags``, Arm ``Features``); None elsewhere."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return None


def measure_cpu_bf16_speed(n: int = 128, repeats: int = 5) -> float:
    """float32 time / bfloat16 time of an ``n``-sized matrix product (a few milliseconds, even where emulated).

    Timed on one thread: on several, so small a product takes about as long as waking OpenMP's threads, which
    other processes on the cores stretch to milliseconds; on a shared 2-core machine with oneDNN capped at AVX2
    the ratio then swung from 0.02 to 6, and auto picked emulated bfloat16 in 2 of 3 starts. On one thread it
    stayed at 0.02-0.06 there, and at 0.7-1.4 uncapped (AMX)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _bf16_speed(n, repeats)
    finally:
        torch.set_num_threads(before)


def _bf16_speed(n: int, repeats: int) -> float:
    import torch

    def best(dtype: torch.dtype) -> float:
        a, b = torch.ones(n, n, dtype=dtype), torch.ones(n, n, dtype=dtype)
        torch.mm(a, b)  # kernel selection and first-touch costs stay out of the timing
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(torch.float32) / max(best(torch.bfloat16), 1e-9)


def probe_hardware() -> Hardware:
    """This machine's GPUs, Apple GPU, CPU flags and cores (imports torch; milliseconds)."""
    import torch

    cuda: list[CudaDevice] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            with torch.cuda.device(index):
                bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            cuda.append(CudaDevice(props.name, bf16, round(props.total_memory / 2**30, 1)))
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    flags = read_cpu_flags()
    speed = None
    if flags is None or set(CPU_BF16_FLAGS) & flags:  # no need to time what the flags already rule out
        speed = measure_cpu_bf16_speed()
    omp = os.environ.get("OMP_NUM_THREADS", "")
    omp_threads = int(omp) if omp.isdigit() and int(omp) > 0 else None
    return Hardware(tuple(cuda), mps, flags, speed, cpu_cores(), torch.version.cuda, omp_threads)


def resolve_runtime(
    device: str = AUTO,
    dtype: str = AUTO,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    compile: bool | str = False,
    preprocess: str = AUTO,
    purpose: Purpose = "query",
    expected_items: int | None = None,
    hardware: Hardware | None = None,
) -> Runtime:
    """The runtime for these settings on this machine (``hardware`` defaults to :func:`probe_hardware`).

    ``compile`` is True, False or ``"auto"``: auto compiles on CUDA for a server (``purpose="serve"``:
    a query then takes about 1 ms of GPU time instead of 5, and the compile is paid at start) and for
    ``purpose="batch"`` work expected to embed at least :data:`COMPILE_MIN_ITEMS` items, never for a
    one-shot query, whose compile time would not pay back. ``preprocess`` is ``"threads"``, ``"processes"`` or
    ``"auto"``: worker
    processes on CUDA machines with at least :data:`PROCESSES_MIN_CORES` cores, where a GPU outruns
    what threads sharing one interpreter can decode, threads elsewhere.
    """
    device, dtype = (device or AUTO).strip().lower(), (dtype or AUTO).strip().lower()
    if dtype not in (AUTO, *DTYPES):
        raise RuntimeUnavailableError(f"dtype must be auto or one of {', '.join(DTYPES)}, got {dtype!r} (RAG_DTYPE)")
    if batch_size is not None and batch_size < 1:
        raise RuntimeUnavailableError(f"batch_size must be at least 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise RuntimeUnavailableError(f"workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise RuntimeUnavailableError(f"threads must be at least 1, got {threads}")
    hardware = hardware or probe_hardware()
    device, device_reason = _device(device, hardware)
    dtype, dtype_reason = _dtype(device, dtype, hardware)
    kind = device.split(":", 1)[0]
    compiled, compile_reason = _compile(compile, kind, purpose, expected_items)
    processes, pool_reason = _pool(preprocess, kind, hardware)
    batch_size, batch_reason = _batch_size(batch_size, kind)
    workers, workers_reason = _workers(workers, kind, hardware)
    threads, threads_reason = _threads(threads, kind, hardware)
    runtime = Runtime(
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        workers=workers,
        threads=threads,
        compile=compiled,
        processes=processes,
        reason="; ".join(
            (
                device_reason,
                dtype_reason,
                batch_reason,
                f"{workers_reason}, {pool_reason}",
                threads_reason,
                compile_reason,
            )
        ),
    )
    logger.info("encoder runtime: %s", runtime.describe())
    return runtime


def _device(requested: str, hardware: Hardware) -> tuple[str, str]:
    if requested == AUTO:
        if hardware.cuda:
            return "cuda", f"auto: CUDA GPU {hardware.cuda[0].name}"
        if hardware.mps:
            return "mps", "auto: Apple GPU (mps)"
        return "cpu", "auto: no CUDA or Apple GPU visible to torch"
    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", requested)
    if match is None:
        raise RuntimeUnavailableError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps (RAG_DEVICE)")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        if not hardware.cuda:
            why = (
                "this torch is a CPU-only build"
                if hardware.cuda_build is None
                else f"torch (CUDA {hardware.cuda_build}) sees no GPU: check the driver and CUDA_VISIBLE_DEVICES"
            )
            raise RuntimeUnavailableError(f"device {requested!r} was asked for, but {why}. Set RAG_DEVICE=auto or cpu.")
        if index is not None and int(index) >= len(hardware.cuda):
            raise RuntimeUnavailableError(
                f"device {requested!r} was asked for, but torch sees {len(hardware.cuda)} CUDA GPU(s) "
                f"(cuda:0 to cuda:{len(hardware.cuda) - 1})"
            )
    if kind == "mps" and not hardware.mps:
        raise RuntimeUnavailableError(
            "device 'mps' was asked for, but torch sees no Apple GPU (macOS 12.3+ on Apple silicon). "
            "Set RAG_DEVICE=auto or cpu."
        )
    if kind == "mps" and index is not None:
        raise RuntimeUnavailableError(f"unknown device {requested!r}: Apple GPUs are addressed as 'mps'")
    return requested, f"device {requested} as set"


def _dtype(device: str, requested: str, hardware: Hardware) -> tuple[str, str]:
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        gpu = hardware.cuda[int(device.split(":", 1)[1]) if ":" in device else 0]
        if requested == AUTO:
            if gpu.bf16:
                return "bfloat16", "auto: the GPU supports bfloat16"
            return "float16", "auto: the GPU lacks bfloat16, float16 instead"
        if requested == "bfloat16" and not gpu.bf16:
            raise RuntimeUnavailableError(
                f"dtype bfloat16 was asked for, but {gpu.name} does not support it (Ampere or newer does). "
                "Set RAG_DTYPE=auto or float16."
            )
        return requested, f"dtype {requested} as set"
    if kind == "mps":
        return (requested, f"dtype {requested} as set") if requested != AUTO else ("float16", "auto: float16 on mps")
    native, why = hardware.cpu_bf16_native
    if requested == AUTO:
        return ("bfloat16", f"auto: {why}") if native else ("float32", f"auto: float32, since {why}")
    if requested in ("bfloat16", "float16") and not native:
        logger.warning(
            "dtype %s on this CPU will be very slow: %s. RAG_DTYPE=auto or float32 is faster here.", requested, why
        )
    return requested, f"dtype {requested} as set"


def _batch_size(requested: int | None, kind: str) -> tuple[int, str]:
    if requested:
        return requested, f"batch {requested} as set"
    size = DEFAULT_BATCH.get(kind, DEFAULT_BATCH["cpu"])
    return size, f"batch {size}, the default on {kind}"


def _workers(requested: int | None, kind: str, hardware: Hardware) -> tuple[int, str]:
    if requested:
        return requested, f"{requested} preprocessing workers as set"
    if kind == "cpu":
        workers = max(1, min(-(-hardware.cores // CORES_PER_CPU_WORKER), _MAX_WORKERS))
        return workers, (
            f"{workers} preprocessing worker{'s' * (workers > 1)} for {hardware.cores} cores (one per "
            f"{CORES_PER_CPU_WORKER}): decoding takes a few per cent of the time the model takes on the same cores"
        )
    workers = max(1, min(hardware.cores, _MAX_WORKERS))
    return workers, f"{workers} preprocessing workers, one per core (at most {_MAX_WORKERS})"


def _threads(requested: int | None, kind: str, hardware: Hardware) -> tuple[int | None, str]:
    """torch's intra-op threads: every core on a CPU, where the model's products are nearly all the work."""
    if requested:
        return requested, f"{requested} torch threads as set"
    if hardware.omp_threads:
        return hardware.omp_threads, f"{hardware.omp_threads} torch threads, as OMP_NUM_THREADS sets"
    if kind != "cpu":
        return None, f"torch threads: torch's own number on {kind}, where the model runs off the CPU"
    return hardware.cores, f"{hardware.cores} torch threads, one per core, beside the preprocessing worker(s)"


def _pool(requested: str, kind: str, hardware: Hardware) -> tuple[bool, str]:
    value = (requested or AUTO).strip().lower()
    if value not in (AUTO, "threads", "processes"):
        raise RuntimeUnavailableError(
            f"preprocess must be auto, threads or processes, got {requested!r} (RAG_PREPROCESS)"
        )
    if value != AUTO:
        return value == "processes", f"{value} as set"
    if kind == "cuda" and hardware.cores >= PROCESSES_MIN_CORES:
        return True, f"processes: a GPU outruns threads sharing one interpreter, and {hardware.cores} cores run them"
    return False, f"threads: only {hardware.cores} cores" if kind == "cuda" else "threads: the model shares the cores"


def _compile(requested: bool | str, kind: str, purpose: Purpose, expected_items: int | None) -> tuple[bool, str]:
    if isinstance(requested, bool):
        return requested, "compile on, as asked" if requested else "compile off, not asked for"
    value = requested.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True, "compile on as set"
    if value in ("0", "false", "no", "off", ""):
        return False, "compile off as set"
    if value != AUTO:
        raise RuntimeUnavailableError(f"compile must be auto, true or false, got {requested!r} (RAG_COMPILE)")
    if kind != "cuda":
        return False, f"compile auto: off on {kind}, {CPU_COMPILE_WHY}"
    if purpose == "serve":
        return True, "compile auto: on for a server, whose queries then take about 1 ms of GPU time instead of 5"
    if purpose == "batch" and (expected_items or 0) >= COMPILE_MIN_ITEMS:
        return True, f"compile auto: on, {expected_items} items to embed pay back its minute of compiling"
    return False, f"compile auto: off for a {purpose} of {expected_items or 'few'} items, too short to pay it back"
