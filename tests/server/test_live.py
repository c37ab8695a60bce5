"""The app under uvicorn on 127.0.0.1: simultaneous searches share one encoder and one Milvus Lite client."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from rag.server.shared import serialized
from tests.retrieval.corpus import CAPTIONS, NOTES, Corpus

CONCURRENT = 16


def test_sixteen_simultaneous_searches_all_succeed(live_server: str, corpus: Corpus) -> None:
    queries = []
    for i in range(CONCURRENT):
        picture = corpus.pictures[i % 3]
        kind = i % 4
        if kind == 0:
            queries.append(({"text": CAPTIONS[i % 3], "top_k": "3"}, None))
        elif kind == 1:
            queries.append(({"mode": "image-to-image", "top_k": "3"}, picture))
        elif kind == 2:
            queries.append(({"text": CAPTIONS[(i + 1) % 3], "top_k": "3"}, picture))
        else:
            queries.append(({"text": NOTES[i % 3], "mode": "text-to-text", "top_k": "3"}, None))

    def run(client: httpx.Client, form: dict[str, str], picture) -> list[tuple[str, float]]:
        files = {"image": ("q.png", picture.read_bytes(), "image/png")} if picture is not None else None
        response = client.post("/api/search", data=form, files=files)
        assert response.status_code == 200, response.text
        return [(r["id"], round(r["score"], 4)) for r in response.json()["results"]]

    with httpx.Client(base_url=live_server, timeout=30.0) as client:
        one_by_one = [run(client, form, picture) for form, picture in queries]
    start = threading.Barrier(CONCURRENT, timeout=30)

    def together(index: int) -> list[tuple[str, float]]:
        with httpx.Client(base_url=live_server, timeout=30.0) as client:
            start.wait()
            return run(client, *queries[index])

    with ThreadPoolExecutor(CONCURRENT) as pool:
        at_once = list(pool.map(together, range(CONCURRENT), timeout=60))
    assert at_once == one_by_one
    assert all(results for results in at_once)


def test_serialized_calls_take_turns_and_attributes_pass_through() -> None:
    class Target:
        size = 3

        def __init__(self) -> None:
            self.inside = 0
            self.most = 0

        def work(self) -> int:
            self.inside += 1
            self.most = max(self.most, self.inside)
            threading.Event().wait(0.002)
            self.inside -= 1
            return self.size

        def free(self) -> str:
            return "not locked"

    target = Target()
    lock = threading.Lock()
    shared = serialized(target, lock, unlocked=("free",))
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: shared.work(), range(40))) == [3] * 40
    assert target.most == 1 and shared.size == 3
    with lock:  # a locked method would wait here; an unlocked one does not
        assert shared.free() == "not locked"
