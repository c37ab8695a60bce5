"""The warm model process: reused by the next command, replaced when killed, hung or stale, stopped when idle, one
per set of model settings, one when two commands start it at once, and never loading torch in the `rag` process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rag import background
from rag.cli.warm import client
from tests.helpers.models import parity_dir, process_env, tiny_model_env
from tests.retrieval.corpus import COLLECTION, Corpus, build

ROOT = Path(__file__).resolve().parents[2]
QUERY = ["search", "-t", "a lighthouse on a rocky cliff", "-k", "3", "--json"]

pytestmark = pytest.mark.slow  # each test starts a model process of its own


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> Corpus:
    return build(tmp_path_factory.mktemp("warm-corpus"), tiny_base)


@pytest.fixture
def env(tmp_path: Path, corpus: Corpus):
    """A user of the tiny model over the corpus, with a data folder of this test's own; its processes stopped after."""
    environment = process_env(
        PYTHONPATH=str(ROOT),
        COLUMNS="200",
        RAG_DEVICE="cpu",
        RAG_MILVUS_URI=corpus.db,
        RAG_COLLECTION=COLLECTION,
        RAG_DATA_DIR=str(tmp_path / "data"),
        RAG_KEEP_WARM="3600",  # no process stops while a test runs, however slow the machine; teardown stops them
    )
    yield environment
    client.stop(hosts(tmp_path / "data"))


def rag(env: dict[str, str], *args: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        env={**env, **extra},
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # a cold command on a loaded 2-core machine takes minutes
    )


def hosts(data_dir: Path) -> list[dict]:
    """The warm model processes serving ``data_dir``."""
    return [p for p in client.running() if Path(p["folder"]).parent.parent == data_dir]


def pids(data_dir: Path) -> list[int]:
    return sorted(p["pid"] for p in hosts(data_dir))


def results(run: subprocess.CompletedProcess[str]) -> list[tuple[str, float]]:
    assert run.returncode == 0, run.stderr
    return [(r["id"], round(r["score"], 5)) for r in json.loads(run.stdout)["results"]]


def until(condition, within: float = 60.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_the_second_command_reuses_the_process_and_answers_as_a_cold_run(env, tmp_path) -> None:
    cold = results(rag(env, *QUERY, RAG_KEEP_WARM="0"))
    assert pids(tmp_path / "data") == []  # RAG_KEEP_WARM=0: today's behaviour, no process
    first = rag(env, *QUERY)
    [pid] = pids(tmp_path / "data")
    second = rag(env, *QUERY)
    assert results(first) == results(second) == cold
    [host] = hosts(tmp_path / "data")
    assert host["pid"] == pid and host["status"]["served"] == 2
    folder = Path(host["folder"])
    assert (folder / f"{pid}.sock").stat().st_mode & 0o777 == 0o600
    listed = json.loads(rag(env, "ps", "--json").stdout)
    assert pid in [m["pid"] for m in listed["models"]]
    assert env["RAG_MILVUS_URI"] in [s["data"] for s in listed["lite_servers"]]  # the store it leases runs


def test_relative_paths_and_images_are_read_from_the_commands_folder(env, tmp_path, corpus) -> None:
    shutil.copy(corpus.pictures[3], tmp_path / "query.png")
    args = ["search", "-i", "query.png", "-k", "2", "--json"]
    cold = results(rag(env, *args, cwd=tmp_path, RAG_KEEP_WARM="0", RAG_DATA_DIR="data"))
    assert results(rag(env, *args, cwd=tmp_path, RAG_DATA_DIR="data")) == cold
    assert len(pids(tmp_path / "data")) == 1  # the relative data folder is the command's


def test_a_killed_process_is_replaced_and_the_command_still_answers(env, tmp_path) -> None:
    expected = results(rag(env, *QUERY))
    [pid] = pids(tmp_path / "data")
    os.kill(pid, signal.SIGKILL)
    run = rag(env, *QUERY)
    assert results(run) == expected
    assert "is gone; starting another" in run.stderr
    [replacement] = pids(tmp_path / "data")
    assert replacement != pid


def test_a_process_of_other_code_is_replaced(env, tmp_path) -> None:
    expected = results(rag(env, *QUERY))
    [old] = hosts(tmp_path / "data")
    folder = Path(old["folder"])
    state = json.loads((folder / "state.json").read_text())
    background.write_state(folder, {**state, "stamp": "0.0.1+0"})  # as an older version of the package wrote it
    run = rag(env, *QUERY)
    assert results(run) == expected and "runs other code" in run.stderr
    assert until(lambda: not background.is_running(old["pid"], old["started"]))  # it was asked to stop
    assert len(pids(tmp_path / "data")) == 1


def test_a_hung_process_is_killed_and_replaced(env, tmp_path) -> None:
    expected = results(rag(env, *QUERY))
    [pid] = pids(tmp_path / "data")
    os.kill(pid, signal.SIGSTOP)  # alive, and silent
    try:
        run = rag(env, *QUERY)
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed as hung, as it should be
            os.kill(pid, signal.SIGCONT)
    assert results(run) == expected and "did not answer" in run.stderr
    assert until(lambda: pid not in pids(tmp_path / "data"))


def test_each_command_sets_the_idle_time_and_the_process_stops_after_it(env, tmp_path) -> None:
    rag(env, *QUERY, RAG_KEEP_WARM="300")
    [host] = hosts(tmp_path / "data")
    assert host["status"]["keep_warm"] == 300
    assert results(rag(env, *QUERY, RAG_KEEP_WARM="1"))  # a later command asks for one second
    assert until(lambda: not background.is_running(host["pid"], host["started"]))
    assert not (Path(host["folder"]) / "state.json").exists()
    assert results(rag(env, *QUERY))  # the next command starts another


def test_other_model_settings_get_their_own_process(env, tmp_path) -> None:
    images = [str(p) for p in sorted((parity_dir("base") / "images").glob("*"))[:2]]
    base = rag(env, "similarity", *images, "--json")
    other = tiny_model_env("m3")
    with_m3 = rag(env, "similarity", *images, "--json", **other)
    cold_m3 = rag(env, "similarity", *images, "--json", RAG_KEEP_WARM="0", **other)
    assert base.returncode == with_m3.returncode == cold_m3.returncode == 0, (base.stderr, with_m3.stderr)
    assert json.loads(with_m3.stdout) == json.loads(cold_m3.stdout) != json.loads(base.stdout)
    assert len(pids(tmp_path / "data")) == 2
    # a rebuilt checkpoint (same path, another time) never gets the old process
    weights = tmp_path / "weights.pth"
    shutil.copy(parity_dir("base") / "weights.pth", weights)
    assert rag(env, "similarity", *images, "--json", RAG_WEIGHTS=str(weights)).returncode == 0
    os.utime(weights, (1, 1))
    assert rag(env, "similarity", *images, "--json", RAG_WEIGHTS=str(weights)).returncode == 0
    assert len(pids(tmp_path / "data")) == 4


def test_commands_starting_at_once_end_with_one_process(env, tmp_path) -> None:
    starting = [
        subprocess.Popen(
            [sys.executable, "-m", "rag.cli", *QUERY],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=900) for process in starting]
    assert [p.returncode for p in starting] == [0, 0, 0], outputs
    assert len({json.dumps(json.loads(out)["results"]) for out, _ in outputs}) == 1
    [host] = hosts(tmp_path / "data")
    assert host["status"]["served"] == 3


def test_an_unwritable_data_folder_falls_back_to_this_process_with_one_line(env, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = rag(env, *QUERY, RAG_DATA_DIR=str(blocker / "data"))
    assert results(run) and pids(blocker / "data") == []
    said = [line for line in run.stderr.splitlines() if line.startswith("rag:")]
    assert len(said) == 1 and "running in this process: cannot write" in said[0], run.stderr


def test_a_client_interrupted_mid_command_leaves_the_process_serving_others(env, tmp_path) -> None:
    chatting = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "chat", "-k", "2"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert until(lambda: any((h["status"] or {}).get("busy") for h in hosts(tmp_path / "data")))
    [pid] = pids(tmp_path / "data")
    chatting.send_signal(signal.SIGINT)  # Ctrl-C in the middle of its command
    chatting.communicate(timeout=60)
    assert chatting.returncode == 130
    run = rag(env, *QUERY)  # answered by the same process, which the interrupted command did not take down
    assert results(run) and pids(tmp_path / "data") == [pid]


def test_stop_ends_the_named_process(env, tmp_path) -> None:
    rag(env, *QUERY)
    [host] = hosts(tmp_path / "data")
    stopped = rag(env, "stop", str(host["pid"]))
    assert stopped.returncode == 0 and str(host["pid"]) in stopped.stderr
    assert not background.is_running(host["pid"], host["started"]) and pids(tmp_path / "data") == []


IMPORTS = textwrap.dedent(
    """
    import json, sys
    from rag.cli.warm.client import dispatch
    code = dispatch(sys.argv[1:])
    heavy = ("torch", "transformers", "pymilvus", "llama_index", "numpy", "PIL", "typer", "rich", "pydantic")
    print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}))
    """
)


def test_a_warm_command_loads_no_heavy_module_in_the_rag_process(env, tmp_path) -> None:
    results(rag(env, *QUERY))  # the process is up
    probe = subprocess.run(
        [sys.executable, "-c", IMPORTS, *QUERY], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}, probe.stderr


def test_help_loads_no_heavy_module() -> None:
    probe = "import json, sys; from rag.cli.commands import run; run(['--help']); print(json.dumps(list(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & {"torch", "transformers", "pymilvus", "llama_index", "numpy", "PIL"}, out.stderr
