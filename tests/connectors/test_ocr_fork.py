"""A process that has read pictures with OCR can still start subprocesses with a ``preexec_fn`` (Ray starts its own
processes so): the engines must not be freed in the forked child, where an onnxruntime session waits forever."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("rapidocr")
pytestmark = pytest.mark.slow  # a fresh interpreter and a real OCR engine

SCRIPT = textwrap.dedent(
    """
    import subprocess, sys, threading
    from PIL import Image
    from connectors.sources.ocr import read_pixels

    read, stop = threading.Event(), threading.Event()

    def worker():  # a preprocessing worker that read a picture and stays alive, as a pool's threads do
        read_pixels(Image.new("RGB", (96, 32), "white"), 10**8, threads=2)
        read.set()
        stop.wait()

    threading.Thread(target=worker, daemon=True).start()
    assert read.wait(120)
    subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None, check=True)
    print("started")
    """
)


def test_a_subprocess_with_a_preexec_fn_starts_after_ocr_in_a_live_thread() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and done.stdout.strip() == "started", done.stderr[-2000:]
