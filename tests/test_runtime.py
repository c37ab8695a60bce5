"""Runtime resolution: the auto choice on each kind of hardware (mocked), explicit settings, impossible requests."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from rag.runtime import (
    COMPILE_MIN_ITEMS,
    CudaDevice,
    Hardware,
    RuntimeUnavailableError,
    measure_cpu_bf16_speed,
    probe_hardware,
    read_cpu_flags,
    resolve_runtime,
)

H100 = CudaDevice("NVIDIA H100 80GB HBM3", bf16=True, memory_gib=79.2)
T4 = CudaDevice("Tesla T4", bf16=False, memory_gib=14.6)
SAPPHIRE_RAPIDS = Hardware(
    cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}), cpu_bf16_speed=2.4, cores=2
)
EPYC_ZEN3 = Hardware(cpu_flags=frozenset({"avx2", "fma"}), cores=2)
# bf16 flags, but oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA): the timed product tells the truth.
CAPPED = Hardware(cpu_flags=frozenset({"avx2", "avx512_bf16", "amx_bf16"}), cpu_bf16_speed=0.016, cores=2)
GPU_BOX = Hardware(cuda=(H100,), cpu_flags=EPYC_ZEN3.cpu_flags, cores=16, cuda_build="13.0")


@pytest.mark.parametrize(
    ("hardware", "device", "dtype", "why"),
    [
        (GPU_BOX, "cuda", "bfloat16", "supports bfloat16"),
        (Hardware(cuda=(T4,), cores=8, cuda_build="12.8"), "cuda", "float16", "lacks bfloat16"),
        (Hardware(mps=True, cores=8), "mps", "float16", "mps"),
        (SAPPHIRE_RAPIDS, "cpu", "bfloat16", "amx_bf16"),
        (EPYC_ZEN3, "cpu", "float32", "lacks amx_bf16 and avx512_bf16"),
        (CAPPED, "cpu", "float32", "slower than float32"),
        (Hardware(cpu_flags=None, cpu_bf16_speed=1.8, cores=8), "cpu", "bfloat16", "native speed"),
        (Hardware(cpu_flags=None, cpu_bf16_speed=0.01, cores=8), "cpu", "float32", "emulated"),
    ],
)
def test_auto_picks_the_fast_device_and_dtype(hardware, device, dtype, why) -> None:
    runtime = resolve_runtime(hardware=hardware)
    assert (runtime.device, runtime.dtype) == (device, dtype)
    assert why in runtime.reason


def test_batch_size_and_workers_follow_the_device() -> None:
    gpu, cpu = resolve_runtime(hardware=GPU_BOX), resolve_runtime(hardware=EPYC_ZEN3)
    assert (gpu.batch_size, gpu.workers) == (256, 16)
    assert (cpu.batch_size, cpu.workers) == (16, 1)
    assert resolve_runtime(batch_size=7, workers=3, hardware=GPU_BOX).with_batch_size(9).batch_size == 9


@pytest.mark.parametrize(
    ("hardware", "device", "threads", "workers"),
    [
        (EPYC_ZEN3, "auto", 2, 1),  # 2 cores: both run torch's threads, one preprocessing thread beside them
        (CAPPED, "auto", 2, 1),  # float32 as well
        (replace(SAPPHIRE_RAPIDS, cores=16), "auto", 16, 2),
        (replace(SAPPHIRE_RAPIDS, cores=64), "auto", 64, 8),
        (replace(EPYC_ZEN3, cores=1), "auto", 1, 1),
        (GPU_BOX, "auto", None, 16),  # the model runs on the GPU: torch's own threads, every core decodes
        (GPU_BOX, "cpu", 16, 2),
        (replace(EPYC_ZEN3, omp_threads=1), "auto", 1, 1),  # OMP_NUM_THREADS is the user's say
    ],
)
def test_the_cores_are_split_between_torch_and_preprocessing(hardware, device, threads, workers) -> None:
    runtime = resolve_runtime(device, hardware=hardware)
    assert (runtime.threads, runtime.workers) == (threads, workers)
    assert "torch thread" in runtime.reason and "preprocessing worker" in runtime.reason
    assert resolve_runtime(device, workers=3, threads=5, hardware=hardware).to_dict()["threads"] == 5


def test_the_chosen_threads_are_applied_to_torch() -> None:
    before = torch.get_num_threads()
    try:
        resolve_runtime(threads=1, hardware=EPYC_ZEN3).apply_threads()
        assert torch.get_num_threads() == 1
        resolve_runtime(hardware=GPU_BOX).apply_threads()  # torch's own choice: left alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_explicit_settings_always_win(caplog) -> None:
    assert resolve_runtime("cpu", hardware=GPU_BOX).device == "cpu"
    assert resolve_runtime(dtype="float32", hardware=SAPPHIRE_RAPIDS).dtype == "float32"
    assert resolve_runtime("cuda:0", "float16", hardware=GPU_BOX).dtype == "float16"
    with caplog.at_level(logging.WARNING, logger="rag.runtime"):
        slow = resolve_runtime(dtype="bfloat16", hardware=EPYC_ZEN3)
    assert slow.dtype == "bfloat16" and "dtype bfloat16 as set" in slow.reason
    assert "very slow" in caplog.text and "RAG_DTYPE=auto" in caplog.text


@pytest.mark.parametrize(
    ("device", "dtype", "hardware", "message"),
    [
        ("cuda", "auto", EPYC_ZEN3, "CPU-only build.*RAG_DEVICE=auto or cpu"),
        ("cuda", "auto", Hardware(cuda_build="13.0"), "sees no GPU.*CUDA_VISIBLE_DEVICES"),
        ("cuda:2", "auto", GPU_BOX, "sees 1 CUDA GPU"),
        ("mps", "auto", EPYC_ZEN3, "no Apple GPU"),
        ("tpu", "auto", EPYC_ZEN3, "unknown device 'tpu'"),
        ("cuda", "bfloat16", Hardware(cuda=(T4,), cuda_build="12.8"), "Tesla T4 does not support it.*float16"),
        ("cpu", "float64", EPYC_ZEN3, "dtype must be auto or one of float32, bfloat16, float16"),
    ],
)
def test_impossible_requests_say_what_to_set(device, dtype, hardware, message) -> None:
    with pytest.raises(RuntimeUnavailableError, match=message):
        resolve_runtime(device, dtype, hardware=hardware)


def test_compile_pays_back_only_on_long_gpu_runs_and_servers() -> None:
    big = COMPILE_MIN_ITEMS
    assert resolve_runtime(compile="auto", purpose="batch", expected_items=big, hardware=GPU_BOX).compile
    assert not resolve_runtime(compile="auto", purpose="batch", expected_items=big - 1, hardware=GPU_BOX).compile
    assert not resolve_runtime(compile="auto", purpose="query", expected_items=big, hardware=GPU_BOX).compile
    assert not resolve_runtime(compile="auto", purpose="batch", expected_items=big, hardware=EPYC_ZEN3).compile
    assert resolve_runtime(compile="auto", purpose="serve", hardware=GPU_BOX).compile
    assert not resolve_runtime(compile="auto", purpose="serve", hardware=EPYC_ZEN3).compile
    assert resolve_runtime(compile="true", hardware=EPYC_ZEN3).compile
    with pytest.raises(RuntimeUnavailableError, match="compile must be"):
        resolve_runtime(compile="sometimes", hardware=EPYC_ZEN3)


def test_every_choice_says_why() -> None:
    cpu = resolve_runtime(compile="auto", purpose="batch", expected_items=COMPILE_MIN_ITEMS, hardware=SAPPHIRE_RAPIDS)
    assert "batch 16, the default on cpu" in cpu.reason and "1 preprocessing worker for 2 cores" in cpu.reason
    assert "2 torch threads, one per core" in cpu.reason
    assert "threads: the model shares the cores" in cpu.reason and "compile auto: off on cpu" in cpu.reason
    gpu = resolve_runtime(compile="auto", purpose="serve", hardware=GPU_BOX)
    assert "processes: a GPU outruns threads" in gpu.reason and "compile auto: on for a server" in gpu.reason
    long_run = resolve_runtime(compile="auto", purpose="batch", expected_items=COMPILE_MIN_ITEMS, hardware=GPU_BOX)
    assert f"{COMPILE_MIN_ITEMS} items to embed" in long_run.reason
    explicit = resolve_runtime(batch_size=4, workers=3, threads=2, compile=True, preprocess="threads", hardware=GPU_BOX)
    for why in (
        "batch 4 as set",
        "3 preprocessing workers as set",
        "threads as set",
        "2 torch threads as set",
        "compile on, as asked",
    ):
        assert why in explicit.reason
    assert why in explicit.describe()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\nprocessor\t: 1\n")
    assert read_cpu_flags(str(cpuinfo)) == frozenset({"fpu", "avx2", "amx_bf16", "avx512_bf16"})
    assert read_cpu_flags(str(tmp_path / "missing")) is None


def test_the_bf16_probe_runs_on_one_thread_and_puts_torch_back() -> None:
    before = torch.get_num_threads()
    assert measure_cpu_bf16_speed() > 0
    assert torch.get_num_threads() == before


def test_this_machine_resolves() -> None:
    hardware = probe_hardware()
    runtime = resolve_runtime(hardware=hardware)
    assert hardware.cores >= 1 and runtime.device in ("cpu", "cuda", "mps")
    assert runtime.to_dict()["reason"] == runtime.reason and runtime.reason in runtime.describe()
