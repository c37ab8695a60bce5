"""`rag ingest` with default settings against the reference's one-item float32 loop, and against the code of an
earlier revision, on this CPU as it is and capped at AVX2 (no bf16 units), side by side in one run.

    .venv/bin/python benchmarks/cpu_ingest.py [--items 32] [--loop-items 6] [--rounds 2] [--before REV]
                                              [--splits 2+1,2+2,1+1] [--only native|avx2]

Full-size base model, random weights, JPEG photos 640x480 with captions. Each measurement is a fresh process,
and the configurations take turns round after round, each keeping its best (the load of a shared machine moves):

- ``now``: the ``rag ingest`` command of this tree, no ``RAG_*`` setting but the model's paths; its items/s are
  the ones it reports (the ingest call: decoding, encoding and writing into Milvus Lite);
- ``before``: the same command from ``REV`` (default ``main``), checked out with ``git worktree`` for the run;
- ``loop``: the reference's way, float32, one item per forward, a fused and an image-only call per item on the
  same photos (after one warm-up item), on the first ``--loop-items`` photos (its cost is per item);
- ``peak``: this machine's matrix-product rate in fp32 and bf16, and the GFLOP per item each way performs;
- ``T+W`` (``--splits``): the ``now`` command with ``T`` torch threads (``OMP_NUM_THREADS``) and ``W`` preprocessing
  threads (``RAG_WORKERS``), to compare with the split of the cores that ``rag/runtime.py`` chooses.

"No bf16 units" is this machine with oneDNN and ATen capped at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2``): bf16 is then emulated, and the defaults pick float32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, cpu_name  # noqa: E402

NO_BF16 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}

PREPARE = """
import sys
from pathlib import Path
from benchmarks.common import build_full_size
from benchmarks.ingest import make_corpus
from rag.embeddings.visualized_bge import EVA02_CLIP_B16
work, n = Path(sys.argv[1]), int(sys.argv[2])
build_full_size("base", work)
(work / "vision_config.json").write_text(EVA02_CLIP_B16.model_dump_json())
make_corpus(work / "corpus", n)
"""

LOOP = """
import json, sys, time
from pathlib import Path
from rag.embeddings.registry import load_encoder
from rag.settings import Settings
paths = sorted(Path(sys.argv[1]).glob("*.jpg"))[: int(sys.argv[2])]
texts = [p.with_suffix(".txt").read_text() for p in paths]
encoder = load_encoder(Settings(dtype="float32", batch_size=1))
encoder.encode_fused(paths[:1], texts[:1]), encoder.encode_image(paths[:1])
start = time.perf_counter()
for path, text in zip(paths, texts):
    encoder.encode_fused([path], [text])
    encoder.encode_image([path])
print(json.dumps({"items_per_second": len(paths) / (time.perf_counter() - start)}))
"""

PEAK = """
import json, sys
from pathlib import Path
import torch
from torch.utils.flop_counter import FlopCounterMode
from benchmarks.common import matmul_gflops
from rag.embeddings.registry import load_encoder
from rag.settings import Settings
out = {"fp32": matmul_gflops(torch.float32, seconds=1.0), "bf16": matmul_gflops(torch.bfloat16, seconds=1.0)}
if sys.argv[2] == "flops":
    paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
    texts = [p.with_suffix(".txt").read_text() for p in paths]
    encoder = load_encoder(Settings())
    out["dtype"], out["runtime"] = encoder.runtime.dtype, encoder.runtime.describe()
    with FlopCounterMode(display=False) as counter:
        encoder.encode_fused_and_image(paths, texts)
    out["gflop_per_item"] = counter.get_total_flops() / len(paths) / 1e9
    loop = load_encoder(Settings(dtype="float32", batch_size=1))
    with FlopCounterMode(display=False) as counter:
        loop.encode_fused(paths[:1], texts[:1]), loop.encode_image(paths[:1])
    out["loop_gflop_per_item"] = counter.get_total_flops() / 1e9
print(json.dumps(out))
"""


def run_child(args: list[str], env: dict[str, str], cwd: Path) -> dict:
    out = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode not in (0, 1):  # 1: items skipped, which a benchmark corpus never has; shown below
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ingest_command(tree: Path, work: Path, collection: str, env: dict[str, str]) -> dict:
    db = work / "db" / f"{collection}.db"
    db.parent.mkdir(exist_ok=True)
    return run_child(
        ["-m", "rag.cli", "ingest", str(work / "corpus"), "-c", collection, "--uri", str(db), "--json"],
        {**env, "PYTHONPATH": str(tree), "RAG_DATA_DIR": str(work / "data")},
        tree,
    )


def measure(label: str, extra: dict[str, str], work: Path, before: Path, args) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        extra,
        PYTHONPATH=str(ROOT),
        RAG_WEIGHTS=str(work / "weights.pth"),
        RAG_TEXT_MODEL=str(work / "text_model"),
        RAG_VISION_CONFIG=str(work / "vision_config.json"),
    )
    best: dict[str, float] = {}
    info = run_child(["-c", PEAK, str(work / "corpus"), "flops"], env, ROOT)
    names = ("now", "before", "loop", *args.splits)
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            if name == "loop":
                loop = run_child(["-c", LOOP, str(work / "corpus"), str(args.loop_items)], env, ROOT)
                rate = loop["items_per_second"]
            elif "+" in name:
                torch_threads, workers = name.split("+")
                split = {**env, "OMP_NUM_THREADS": torch_threads, "RAG_WORKERS": workers}
                rate = ingest_command(ROOT, work, f"split{torch_threads}x{workers}_{label}_{round_}", split)
                rate = rate["items_per_second"]
            else:
                tree = ROOT if name == "now" else before
                rate = ingest_command(tree, work, f"{name}_{label}_{round_}", env)["items_per_second"]
            best[name] = max(best.get(name, 0.0), rate)
        peaks = run_child(["-c", PEAK, str(work / "corpus"), "-"], env, ROOT)
        for key in ("fp32", "bf16"):
            info[key] = max(info[key], peaks[key])
        print(f"  {label}: round {round_ + 1} done, load {os.getloadavg()[0]:.1f}", flush=True)
    return {**best, **info}


def show(label: str, r: dict, args) -> None:
    peak = r["bf16" if r["dtype"] == "bfloat16" else "fp32"]
    now_flops, loop_flops = r["now"] * r["gflop_per_item"], r["loop"] * r["loop_gflop_per_item"]
    print(f"\n{label}: defaults = {r['runtime']}")
    print(f"  matmul peak fp32 {r['fp32']:.0f} GFLOP/s, bf16 {r['bf16']:.0f} GFLOP/s")
    print(
        f"  rag ingest, now     {r['now']:6.2f} items/s  {r['gflop_per_item']:6.1f} GFLOP/item  "
        f"{now_flops:5.0f} GFLOP/s = {now_flops / peak:4.0%} of the {r['dtype']} peak"
    )
    print(f"  rag ingest, before  {r['before']:6.2f} items/s  (now / before = {r['now'] / r['before']:.2f})")
    print(
        f"  reference loop fp32 {r['loop']:6.2f} items/s  {r['loop_gflop_per_item']:6.1f} GFLOP/item  "
        f"{loop_flops:5.0f} GFLOP/s = {loop_flops / r['fp32']:4.0%} of the fp32 peak"
    )
    print(f"  rag ingest / reference loop = {r['now'] / r['loop']:.2f}x (before: {r['before'] / r['loop']:.2f}x)")
    for split in args.splits:
        threads, workers = split.split("+")
        print(
            f"  rag ingest, {threads} torch threads + {workers} preprocessing threads: {r[split]:6.2f} items/s "
            f"({r[split] / r['now']:.2f} of the runtime's choice)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--loop-items", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", default="main", help="the revision to compare with")
    parser.add_argument("--only", choices=["native", "avx2"], help="one of the two CPUs")
    parser.add_argument("--splits", default="", help="torch threads + preprocessing threads to compare, e.g. 2+1,2+2")
    args = parser.parse_args()
    args.splits = [split.strip() for split in args.splits.split(",") if split.strip()]
    print(
        f"CPU {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.items} photos, "
        f"best of {args.rounds} alternating rounds; before = {args.before}"
    )
    with tempfile.TemporaryDirectory(prefix="rag-cpu-ingest-") as tmp:
        work, before = Path(tmp), Path(tmp) / "before"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", PREPARE, str(work), str(args.items)], env=env, cwd=ROOT, check=True)
        add = ["git", "worktree", "add", "--detach", "--quiet", str(before), args.before]
        subprocess.run(add, cwd=ROOT, check=True)
        try:
            for label, extra in (("native", {}), ("avx2", NO_BF16)):
                if args.only in (None, label):
                    show(
                        f"{label} ({'as it is' if not extra else 'oneDNN/ATen capped at AVX2: no bf16 units'})",
                        measure(label, extra, work, before, args),
                        args,
                    )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
