"""What checking a token costs a request: the auth middleware around a route that does nothing, side by side.

Each variant calls the same do-nothing ASGI app ``--requests`` times in one event loop, with a ``GET /api/stats``
scope: bare (no middleware), the middleware with no token configured (open: one ``stat`` of the tokens file),
RAG_SERVER_TOKEN, and a stored ``rag tokens`` token (scrypt once per process, then a SHA-256 look-up and a
``stat``). The overhead is the variant's median minus the bare median. The first check of a stored token (the
scrypt hash, about 16 MiB) is timed apart.

    .venv/bin/python benchmarks/auth.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cpu_name, p50  # noqa: E402
from rag.access import TokenStore  # noqa: E402
from rag.server.auth.middleware import Access, AuthMiddleware  # noqa: E402
from rag.settings import Settings  # noqa: E402


async def _nothing(scope: dict, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]


def _scope(token: str | None) -> dict:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return {"type": "http", "method": "GET", "path": "/api/stats", "headers": headers, "client": ("10.0.0.1", 1)}


async def _run(app: object, token: str | None, n: int) -> list[float]:
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    times = []
    for _ in range(n):
        scope = _scope(token)
        started = time.perf_counter()
        await app(scope, receive, send)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    assert set(statuses) == {200}, set(statuses)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    n = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        open_access = AuthMiddleware(_nothing, Access(Settings(data_dir=data / "open")))
        server = AuthMiddleware(_nothing, Access(Settings(data_dir=data / "server", server_token="s3cret-token")))
        _, token = TokenStore(data / "stored").add("bench", "read")
        stored = AuthMiddleware(_nothing, Access(Settings(data_dir=data / "stored")))
        started = time.perf_counter()
        assert TokenStore(data / "stored").verify(token) is not None
        first = time.perf_counter() - started
        variants = {
            "bare": (_nothing, None),
            "open (no token configured)": (open_access, None),
            "RAG_SERVER_TOKEN": (server, "s3cret-token"),
            "stored token (rag tokens)": (stored, token),
        }
        medians = {}
        for _round in range(2):  # the first round warms up; the second is reported
            medians = {name: p50(asyncio.run(_run(app, tok, n))) for name, (app, tok) in variants.items()}
    print(
        f"{cpu_name()}; load {os.getloadavg()[0]:.1f}; {n} requests per variant, GET /api/stats scope, do-nothing route"
    )
    bare = medians["bare"]
    for name, median in medians.items():
        extra = "" if name == "bare" else f"  overhead {1e6 * (median - bare):6.1f} us"
        print(f"  {name:28s} p50 {1e6 * median:6.1f} us{extra}")
    print(f"  first check of a stored token (scrypt): {1e3 * first:.1f} ms, once per token and process")


if __name__ == "__main__":
    main()
