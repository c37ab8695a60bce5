"""A standalone ``milvus-lite server`` process for tests that go over http, as they would to a Milvus server.

One runs for the whole test session (``tests/conftest.py``: ``milvus_server``); each test gets a database of
its own on it (``http://127.0.0.1:PORT/<db>``), so its collections are its own. Kill tests start their own and
kill it (-9), then start it again on the same folder and port.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from connectors.milvus.lite_server import answers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _interruptible() -> None:
    """Ctrl-C stops the server even when the suite runs in the background (``pytest &``), whose shell ignores SIGINT
    and whose children would inherit that: :meth:`MilvusLiteServer.stop` would then wait its 30 s for nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class MilvusLiteServer:
    """``milvus-lite server --data-dir D --host 127.0.0.1 --port P``, started and stopped by the test."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 60.0) -> MilvusLiteServer:
        command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_interruptible
        )
        log.close()
        deadline = time.monotonic() + wait
        while not answers(self.port, timeout=0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"milvus-lite server did not start on {self.uri}; see {log.name}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """Kill -9, as a crash would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # milvus-lite server closes its data folder on Ctrl-C
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
