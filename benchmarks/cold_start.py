"""Cold start of the `rag` command with the full-size base checkpoint (random weights), page cache warm.

    .venv/bin/python benchmarks/cold_start.py [--runs 3] [--warm-runs 5] [--dtype auto]

Each command runs as a fresh process; wall time from process start to exit, and its peak RSS
(from wait4; this script imports no torch itself, so the children's peaks are their own). The
model build is also timed both ways, side by side in one child with the same imports done
beforehand: random initialisation then a copying load (how it was), against uninitialised
parameters and a memory-mapped, assigning load.

Then the warm model process (RAG_KEEP_WARM): the same search cold (RAG_KEEP_WARM=0) and warm, alternating
(the warm one after a first command started the process), p50 and the `rag` process's own peak RSS (the
model process is not its child: its memory is reported apart, from `rag ps`); and one ingest of a small corpus
in its own process against the same ingest handed to the warm process, for the choice of where `rag ingest`
encodes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAG = [sys.executable, "-m", "rag.cli"]

BUILD = """
import sys
from pathlib import Path
from benchmarks.common import build_full_size
from rag.embeddings.visualized_bge import EVA02_CLIP_B16
work = Path(sys.argv[1])
build_full_size("base", work)
(work / "vision_config.json").write_text(EVA02_CLIP_B16.model_dump_json())
"""

# Both builds in one process, alternating and in both orders, after every import either needs (transformers'
# BERT code is imported by the first AutoModel.from_config, which would otherwise be charged to whichever runs first).
MODEL_BUILD = """
import importlib, statistics, sys, time
import torch
from transformers import AutoConfig
from rag.embeddings.visualized_bge import EVA02_CLIP_B16, VisualizedBGEModel
from rag.embeddings.visualized_bge.loading import build_model, load_weights
weights, text_dir, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = AutoConfig.from_pretrained(text_dir)
importlib.import_module(f"transformers.models.{config.model_type}.modeling_{config.model_type}")

def old():
    model = VisualizedBGEModel(config, EVA02_CLIP_B16)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))

def new():
    load_weights(build_model(config, EVA02_CLIP_B16), weights)

times = {old: [], new: []}
for r in range(rounds):
    for build in (old, new) if r % 2 == 0 else (new, old):
        start = time.perf_counter()
        build()
        times[build].append(time.perf_counter() - start)
print(statistics.median(times[old]), statistics.median(times[new]))
"""


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit status of one fresh process."""
    seconds, peak, code, _ = run_usage(args, env)
    return seconds, peak, code


def run_usage(args: list[str], env: dict[str, str]) -> tuple[float, float, int, float]:
    """As :func:`run`, and the CPU seconds the process used (user + system): a figure the machine's load
    changes far less than the wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen(RAG + args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), cpu


def cpu_of(pid: int) -> float:
    """CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """The CPU's name (read here: benchmarks.common imports torch, whose pages a forked child would count) and load."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            name,
        )
    return f"{name}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


def warm_figures(env: dict[str, str], corpus: Path, runs: int) -> None:
    """The search cold and warm side by side, the rag process's peak RSS, and ingest in or out of the process."""
    search = ["search", "-c", "cold", "--text", "a bridge at night"]
    cold_env, warm_env = {**env, "RAG_KEEP_WARM": "0"}, {**env, "RAG_KEEP_WARM": "300"}
    first, _, code = run(search, warm_env)
    assert code == 0, f"the first warm search failed ({code})"
    ps = subprocess.run(RAG + ["ps", "--json"], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    models = [m for m in json.loads(ps.stdout)["models"] if m["folder"].startswith(env["RAG_DATA_DIR"])]
    host = models[0]["pid"]
    cold, warm, host_cpu = [], [], []
    for _ in range(runs):
        cold.append(run_usage(search, cold_env))
        before = cpu_of(host)
        warm.append(run_usage(search, warm_env))
        host_cpu.append(cpu_of(host) - before)
    print(f"\nwarm model process (RAG_KEEP_WARM), p50 of {runs} alternating runs:")
    print(f"{'command':44} {'p50 s':>7} {'min s':>7} {'rag peak RSS MB':>16}")
    print(f"{'first search (starts the process, loads)':44} {first:7.2f} {first:7.2f}")
    for label, results in (("search, cold (RAG_KEEP_WARM=0)", cold), ("search, warm", warm)):
        times = [r[0] for r in results]
        print(f"{label:44} {statistics.median(times):7.2f} {min(times):7.2f} {max(r[1] for r in results):16.0f}")
    print(
        f"CPU seconds per search, p50: cold {statistics.median(r[3] for r in cold):.2f}; warm: the rag process "
        f"{statistics.median(r[3] for r in warm):.2f} + the model process {statistics.median(host_cpu):.2f}"
    )
    ratio = statistics.median(r[0] for r in cold) / statistics.median(r[0] for r in warm)
    memory = ", ".join(f"{m['rss'] / 2**20:.0f} MB" for m in models)
    print(f"warm/cold: {ratio:.1f}x faster; the model process holds {memory}; {machine()}")
    # The ingest handed over first, while the process is up (it would stop after RAG_KEEP_WARM idle seconds).
    for label, ingest_env, collection in (
        ("ingest handed to the warm process", warm_env, "warm"),
        ("ingest in its own process", cold_env, "own"),
    ):
        seconds, peak, code = run(["ingest", str(corpus), "-c", collection], ingest_env)
        assert code == 0, f"{label} failed ({code})"
        print(f"{label:44} {seconds:7.2f} s, rag peak RSS {peak:.0f} MB")
    for model in models:
        subprocess.run(RAG + ["stop", str(model["pid"])], env=env, cwd=ROOT, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--warm-only", action="store_true", help="only the warm model process's figures")
    parser.add_argument("--dtype", default="auto", help="RAG_DTYPE for the commands")
    args = parser.parse_args()
    # ignore_cleanup_errors: a Lite server may still be writing its last files as the folder goes
    with tempfile.TemporaryDirectory(prefix="rag-cold-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env["PYTHONPATH"] = str(ROOT)
        env["RAG_KEEP_WARM"] = "0"  # every command in its own process, unless said otherwise
        subprocess.run([sys.executable, "-c", BUILD, str(work)], env=env, cwd=ROOT, check=True)
        weights, text_dir = work / "weights.pth", work / "text_model"
        corpus = work / "corpus"
        corpus.mkdir()
        for image in sorted((ROOT / "tests/fixtures/parity/base/images").glob("*.jpg")):
            shutil.copy(image, corpus / image.name)
        more = work / "more"  # 16 pictures for the ingest comparison
        more.mkdir()
        for n in range(8):
            for image in sorted(corpus.glob("*.jpg")):
                shutil.copy(image, more / f"{n}-{image.name}")
        env.update(
            RAG_WEIGHTS=str(weights),
            RAG_TEXT_MODEL=str(text_dir),
            RAG_VISION_CONFIG=str(work / "vision_config.json"),
            RAG_MILVUS_URI=str(work / "db" / "milvus.db"),
            RAG_DATA_DIR=str(work / "data"),
            RAG_DTYPE=args.dtype,
            XDG_CACHE_HOME=str(work / "cache"),
        )
        seconds, _, code = run(["ingest", str(corpus), "-c", "cold"], env)
        assert code == 0, f"ingest failed ({code})"
        print(machine())
        print(
            f"full-size base checkpoint {weights.stat().st_size / 1e6:.0f} MB, RAG_DTYPE={args.dtype}, "
            f"{os.cpu_count()} cores; ingest of 2 images {seconds:.1f} s (hashes the checkpoint once)"
        )
        print(f"peak RSS target: below twice the checkpoint, {2 * weights.stat().st_size / 2**20:.0f} MB")
        if not args.warm_only:
            commands = {
                "rag search -c cold --text ...": ["search", "-c", "cold", "--text", "a bridge at night"],
                "rag stats -c cold": ["stats", "-c", "cold"],
                "rag search --mode bogus (argument error)": ["search", "-c", "cold", "-t", "x", "--mode", "bogus"],
                "rag --help": ["--help"],
            }
            print(f"{'command':44} {'p50 s':>7} {'min s':>7} {'peak RSS MB':>12}")
            for label, argv in commands.items():
                results = [run(argv, env) for _ in range(args.runs)]
                times = [r[0] for r in results]
                print(
                    f"{label:44} {statistics.median(times):7.2f} {min(times):7.2f} {max(r[1] for r in results):12.0f}"
                )
            out = subprocess.run(
                [sys.executable, "-c", MODEL_BUILD, str(weights), str(text_dir), str(max(2, args.runs))],
                env=env,
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
            old, new = map(float, out.stdout.split())
            print(
                f"model build, imports warm, p50 of {max(2, args.runs)} alternating rounds: random init + load "
                f"{old:.2f} s, uninitialised + mmap/assign load {new:.2f} s ({old / new:.1f}x faster)"
            )
        warm_figures(env, more, args.warm_runs)


if __name__ == "__main__":
    main()
