"""`--engine ray` on a local Ray (2 CPUs) with the tiny Visualized-BGE and Milvus Lite: the rows of the local
engine, idempotent, and complete after a killed encoder actor or a killed driver."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from connectors.milvus import Backend, EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.items import ImageRef, KnowledgeItem
from rag.settings import Settings
from tests.helpers.models import process_env, tiny_model_fields
from tests.ingest.test_cli_ingest import CORPUS, run
from tests.ingest.test_pipeline import kill_when_added, make_folder

ray = pytest.importorskip("ray", reason="the Ray engine's tests need the mmrag[ray] extra")
from rag.ingest import ray_engine, ray_stages  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster starts for most of them

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def tiny_settings(**overrides) -> Settings:
    return Settings(**tiny_model_fields(), **overrides)


def garble_png(path: Path) -> None:
    """Rewrite a PNG so that its chunks' checksums hold (the sources' check passes) but its pixels cannot be
    inflated: only a full decode, on a Ray worker, finds it broken."""
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[at : at + 4])[0]
    garbage = bytes(length)
    chunk = b"IDAT" + garbage
    data[at + 4 : at + 12 + length] = chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(bytes(data))


def make_corpus(root: Path) -> Path:
    """Captioned images, a manifest (rows on images and a text-only row), a non-image and a garbled PNG."""
    folder = make_folder(root / "folder", 6)
    shutil.copy(folder / "img000.png", folder / "garbled.png")
    garble_png(folder / "garbled.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = [{"image": f"folder/img{i:03d}.png", "text": f"manifest row {i}", "split": "train"} for i in range(3)]
    rows.append({"text": "a text-only row about bridges"})
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return root


def summary_of(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def stored(db: Path, collection: str) -> dict[str, tuple[dict, np.ndarray, np.ndarray | None]]:
    with MilvusStore.open(db, collection, create=False) as store:
        return {
            item.id: (item.model_dump(exclude={"created_at"}), fused, image)
            for item, fused, image in store.iter_vectors()
        }


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_ray_writes_what_local_writes_names_every_bad_file_and_reruns_idempotently(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    sources = [str(corpus / "folder"), str(corpus / "manifest.jsonl")]
    local = summary_of(run(tmp_path, "ingest", *sources, "-c", "local", "--json"))
    result = run(tmp_path, "ingest", *sources, "-c", "ray", "--engine", "ray", "--json")
    assert result.exit_code == 1, result.output  # bad files were skipped
    on_ray = summary_of(result)
    assert (on_ray["added"], on_ray["skipped"]) == (local["added"], local["skipped"]) == (10, 2)
    assert local["warmup_seconds"] == 0 < on_ray["warmup_seconds"] < on_ray["seconds"]  # actors start within the run
    problems = [
        p for p in map(json.loads, Path(on_ray["report"]).read_text().splitlines()) if "kind" in p
    ]  # problems, not runs
    skipped = {(Path(p["source"]).name, p["kind"]) for p in problems if p["severity"] == "error"}
    assert skipped == {("broken.png", "corrupt_image"), ("garbled.png", "corrupt_image")}

    db = tmp_path / "db" / "milvus.db"
    want, got = stored(db, "local"), stored(db, "ray")
    assert set(got) == set(want)
    for item_id, (fields, fused, image) in want.items():
        assert got[item_id][0] == fields
        assert cosine(got[item_id][1], fused) > 0.9999
        assert (image is None) == (got[item_id][2] is None)
        if image is not None:
            assert cosine(got[item_id][2], image) > 0.9999

    again = summary_of(run(tmp_path, "ingest", *sources, "-c", "ray", "--engine", "ray", "--json"))
    assert (again["added"], again["unchanged"]) == (0, 10)

    (corpus / "folder" / "img002.txt").write_text("a new caption")
    changed = summary_of(run(tmp_path, "ingest", *sources, "-c", "ray", "--engine", "ray", "--json"))
    assert (changed["added"], changed["unchanged"], changed["replaced"]) == (0, 9, 1)
    with MilvusStore.open(db, "ray", create=False) as store:
        assert store.count() == 10
        assert store.count({"text": "a new caption"}) == 1 and store.count({"text": "item 2: a green square"}) == 0
        assert store.stats().ingest_runtime["device"] == "cpu"


def test_an_items_columns_give_it_back():
    items = [
        KnowledgeItem.create(
            source="/corpus/guide.md",
            text="how to install, étape 2",
            anchor="install-2",
            name="guide.md#install-2",
            metadata={"file_path": "/corpus/guide.md", "page": 7, "nested": {"ok": [1, 2.5, None]}},
            tags=["docs", "ü"],
        ),
        KnowledgeItem.create(
            source="/corpus/cat.png", image=ImageRef(uri="/corpus/cat.png", mime_type="image/png"), image_bytes=b"png"
        ),
        KnowledgeItem.create(source="/corpus/dog.jpg", text="a dog", image=ImageRef(uri="https://x.test/dog.jpg")),
    ]
    table = ray_stages.block(items)
    assert all(not (isinstance(t, pa.ExtensionType) or pa.types.is_binary(t)) for t in table.schema.types)
    batch = {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}
    assert ray_stages.items_of(batch) == items


def column_types(dataset) -> dict[str, object]:
    return dict(zip(dataset.schema().names, dataset.schema().types))


def test_the_stages_pass_ndarray_columns_not_python_objects(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 3)
    (folder / "note.txt").write_text("a text-only item")  # no image: zeros in its pixels row
    items = [item for item in open_sources([folder]) if isinstance(item, KnowledgeItem)]
    plan = ray_engine.plan_workers(ray_engine.RayOptions(), [{"CPU": 2.0}], writers=False)
    blocks = [ray.put(ray_stages.block(items))]
    decoded = ray_engine.decoding(ray.data.from_arrow_refs(blocks), tiny_base.image_transform, plan).materialize()
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "items", encoder_info=EncoderInfo.of(tiny_base)) as store:
        encoded = ray_engine.encoding(decoded, tiny_settings(batch_size=4), store, plan, 4, len(items)).materialize()

    pixels = column_types(decoded)["pixels"]
    assert pixels.shape == (3, 224, 224) and pixels.value_type == pa.uint8()  # one fixed-shape tensor column
    for name in ("fused", "image_vector"):
        vectors = column_types(encoded)[name]
        assert vectors.shape == (tiny_base.dim,) and vectors.value_type == pa.float32()
    for dataset in (decoded, encoded):  # the rest: plain Arrow columns, no pickles (binary or Python objects)
        others = [t for name, t in column_types(dataset).items() if name not in ("pixels", "fused", "image_vector")]
        assert all(pa.types.is_string(t) or pa.types.is_boolean(t) or pa.types.is_floating(t) for t in others)
    assert "pixels" not in column_types(encoded)  # the vectors go on, not the pixels

    batch = encoded.take_batch(len(items), batch_format="numpy")
    assert batch["fused"].dtype == np.float32 and batch["fused"].shape == (len(items), tiny_base.dim)
    assert any(not item.image for item in items) and not any(batch["error"])
    got = {item.id: (item, batch["fused"][i]) for i, item in enumerate(ray_stages.items_of(batch))}
    assert [got[item.id][0] for item in items] == items
    path = folder / "img001.png"
    [item] = [item for item in items if item.image and item.image.uri == str(path)]
    fused, _ = tiny_base.encode_fused_and_image([path], [item.text])
    assert cosine(got[item.id][1], fused[0]) > 0.9999


def encoder_actor_pids() -> list[int]:
    """Processes of this machine whose title Ray set to the encoder actor's."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and b"MapBatches(Encode)" in title:
            pids.append(int(entry.name))
    return pids


def test_a_killed_encoder_actor_is_replaced_and_the_count_is_exact(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 40)
    killed: list[int] = []
    added_before_the_kill: list[int] = []

    def kill_an_encoder(report) -> None:
        if report.added and not killed:
            killed.extend(encoder_actor_pids()[:1])
            added_before_the_kill.append(report.added)
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    with MilvusStore.open(tmp_path / "db" / "milvus.db", "items", encoder_info=EncoderInfo.of(tiny_base)) as store:
        report = ray_engine.ingest(
            open_sources([folder]),
            tiny_settings(batch_size=4),
            store,
            image_transform=tiny_base.image_transform,
            on_progress=kill_an_encoder,
        )
        assert killed, "no encoder actor was found to kill"
        assert added_before_the_kill[0] < 40
        assert (report.added, report.skipped, store.count()) == (40, [], 40)


INTERRUPTIBLE = textwrap.dedent(
    """
    import sys
    import ray
    from connectors.milvus import EncoderInfo, MilvusStore
    from connectors.sources import open_sources
    from rag.ingest import ray_engine
    from tests.conftest import load_tiny
    from tests.ingest.test_ray_engine import tiny_settings

    ray.init(address=sys.argv[3], logging_level="WARNING")
    encoder = load_tiny("base")
    with MilvusStore.open(sys.argv[1], "items", encoder_info=EncoderInfo.of(encoder)) as store:
        report = ray_engine.ingest(
            open_sources([sys.argv[2]]), tiny_settings(batch_size=4), store, image_transform=encoder.image_transform,
            on_progress=lambda progress: print("done", progress.added, flush=True),
        )
        print("finished", report.added, flush=True)
    """
)


def test_a_killed_driver_resumes_to_the_exact_count(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 60)
    db = tmp_path / "db" / "milvus.db"
    kill_when_added(INTERRUPTIBLE, [str(db), str(folder), ray.get_runtime_context().gcs_address], 8, tmp_path)

    with MilvusStore.open(db, "items", encoder_info=EncoderInfo.of(tiny_base)) as store:
        assert 8 <= store.count() < 60
        report = ray_engine.ingest(
            open_sources([folder]), tiny_settings(batch_size=4), store, image_transform=tiny_base.image_transform
        )
        assert report.added + report.unchanged == 60
        assert store.count() == 60


def test_a_milvus_lite_server_over_http_is_written_by_the_driver(tiny_base, tmp_path):
    from milvus_lite.server_manager import server_manager_instance

    # Milvus Lite served over http is still Lite (the store asks its version): its engine takes one writer per
    # collection, so the driver writes, as for a Lite folder (a Milvus server gets writer actors: plan_workers).
    uri = server_manager_instance.start_and_get_uri(str(tmp_path / "server.db"))
    folder = make_folder(tmp_path / "corpus", 12)
    try:
        with MilvusStore.open(uri, "items", encoder_info=EncoderInfo.of(tiny_base)) as store:
            assert store.backend is Backend.LITE
            assert not ray_engine.connect(ray_engine.RayOptions(), store.backend).writers
            report = ray_engine.ingest(
                open_sources([folder]), tiny_settings(batch_size=4), store, image_transform=tiny_base.image_transform
            )
            assert (report.added, store.count()) == (12, 12)
            path = folder / "img005.png"
            fused, image = tiny_base.encode_fused_and_image([path], [(folder / "img005.txt").read_text()])
            [hit] = store.search(fused[0], k=1, with_vectors=True)
            assert hit.item.image.uri == str(path)
            assert cosine(hit.embedding, fused[0]) > 0.9999 and cosine(hit.image_embedding, image[0]) > 0.9999
    finally:
        server_manager_instance.release_server(str(tmp_path / "server.db"))


def test_workers_with_another_model_than_the_collection_stop_the_run_and_say_why(tiny_base, tmp_path):
    folder = make_folder(tmp_path / "corpus", 2)
    elsewhere = Settings(**tiny_model_fields("m3"))
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "items", encoder_info=EncoderInfo.of(tiny_base)) as store:
        with pytest.raises(ray_engine.RayEngineError, match="must name the same files on every node"):
            ray_engine.ingest(open_sources([folder]), elsewhere, store, image_transform=tiny_base.image_transform)
        assert store.count() == 0


def test_gpus_asked_of_a_cluster_without_any_is_refused_before_loading_anything(tmp_path):
    result = run(tmp_path, "ingest", str(CORPUS), "-c", "kb", "--engine", "ray", "--gpus-per-worker", "1")
    assert result.exit_code == 2
    assert "has none" in " ".join(result.output.split())


def test_ray_missing_gives_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as it does without the extra
    result = run(tmp_path, "ingest", str(CORPUS), "-c", "kb", "--engine", "ray")
    assert result.exit_code == 2
    assert "pip install 'mmrag[ray]'" in " ".join(result.output.split())


def test_an_unreachable_cluster_is_named(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_MILVUS_URI": str(tmp_path / "db" / "milvus.db")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag.cli",
            "ingest",
            str(CORPUS),
            "--engine",
            "ray",
            "--ray-address",
            "ray://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "cannot reach the Ray cluster at ray://127.0.0.1:1" in " ".join(out.stderr.split())


def test_workers_are_sized_to_the_cluster():
    gpu_nodes = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 4.0}]
    plan = ray_engine.plan_workers(ray_engine.RayOptions(gpus_per_worker=0.5), gpu_nodes, writers=True)
    assert (plan.workers, plan.cpus_per_worker, plan.decode_cpus, plan.torch_threads) == (16, 1.0, 1.0, 1)
    assert plan.decode_threads == 1  # decoding tasks of a CPU each, as many as the CPUs left hold
    cpu_nodes = [{"CPU": 8.0}, {"CPU": 4.0}, {"CPU": 0.0}]  # the last: a head node that runs no work
    plan = ray_engine.plan_workers(ray_engine.RayOptions(), cpu_nodes, writers=False)
    assert (plan.workers, plan.cpus_per_worker, plan.torch_threads, plan.decode_threads) == (2, 3.5, 4, 4)
    with pytest.raises(ray_engine.RayEngineError, match="lower workers or gpus_per_worker"):
        ray_engine.plan_workers(ray_engine.RayOptions(gpus_per_worker=1, workers=9), gpu_nodes, writers=False)
    with pytest.raises(ray_engine.RayEngineError, match="leave 0 of the cluster's 12 CPUs for decoding"):
        ray_engine.plan_workers(ray_engine.RayOptions(workers=3, cpus_per_worker=4), cpu_nodes, writers=False)


#: A line of Ray's C++ logging ("[2026-01-01 10:00:00,000 E 123 123] core_worker.cc:2465: ...") and of its Python
#: loggers ("2026-01-01 10:00:00,000\tWARNING worker.py:123 -- ...").
RAY_CPP_LINE = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] \S+\.(cc|h):\d+:")
RAY_PY_LINE = re.compile(r"\d{4}-\d\d-\d\d [\d:,]+\s+(DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+\.py:\d+ -- ")


def ray_processes(root: str) -> list[str]:
    """Command lines of the running processes that belong to a Ray whose files are under ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or not a process
            continue
        if root in line:
            found.append(line)
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="lists processes through /proc")
def test_the_cli_stops_the_ray_it_started_and_keeps_ray_quiet(tmp_path):
    import tempfile

    ray_root = tempfile.mkdtemp(prefix="rag-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in process_env().items() if not k.startswith("RAY_")}
    env.update(
        PYTHONPATH=str(ROOT),
        RAY_TMPDIR=ray_root,
        RAG_MILVUS_URI=str(tmp_path / "db" / "milvus.db"),
        RAG_DATA_DIR=str(tmp_path / "data"),
        COLUMNS="200",
    )
    try:
        run = subprocess.run(
            [sys.executable, "-m", "rag.cli", "ingest", str(CORPUS), "-c", "kb", "--engine", "ray", "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout.strip().splitlines()[-1])["added"] == 7
        assert ray_processes(ray_root) == []  # nothing of the local Ray it started outlives the command
        for noise in ("Token authentication", "pid="):  # Ray's notices, its workers' output
            assert noise not in run.stderr, run.stderr
        ray_lines = [line for line in run.stderr.splitlines() if RAY_CPP_LINE.search(line) or RAY_PY_LINE.search(line)]
        assert ray_lines == []  # e.g. core_worker.cc's error on actors with restarts, each run
        assert (tmp_path / "data" / "logs" / "ray.log").is_file()  # where Ray's own lines went
    finally:
        shutil.rmtree(ray_root, ignore_errors=True)
