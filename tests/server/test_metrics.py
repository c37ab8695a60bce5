"""``/metrics``: Prometheus text with requests and latency per route (by template), the store's state, its
failed calls, and readiness."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.server.test_api import png_bytes


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def test_metrics_count_requests_per_route_and_report_the_store(client: TestClient) -> None:
    before = samples(client)
    search = (("method", "POST"), ("route", "/api/search"), ("status", "200"))
    for _ in range(3):
        assert client.post("/api/search", data={"text": "a lighthouse"}).status_code == 200
    assert client.get("/api/items/no-such-item/image").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    after = samples(client)
    assert after[("rag_http_requests_total", search)] - before.get(("rag_http_requests_total", search), 0) == 3
    image = (("method", "GET"), ("route", "/api/items/{item_id}/image"), ("status", "404"))
    assert after[("rag_http_requests_total", image)] >= 1  # the route's template: ids make no new series
    assert after[("rag_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))] >= 1
    timed = (("method", "POST"), ("route", "/api/search"))
    assert after[("rag_http_request_seconds_count", timed)] >= 3 and after[("rag_http_request_seconds_sum", timed)] > 0
    assert after[("rag_ready", ())] == 1
    assert after[("rag_store_state", (("state", "ok"),))] == 1
    assert after[("rag_store_state", (("state", "unavailable"),))] == 0
    assert after[("rag_store_unavailable_total", ())] == 0
    assert ("rag_ingested_items_total", ()) in after


def test_the_encoder_batches_of_queries_are_timed(client: TestClient) -> None:
    text, image = (("input", "text"),), (("input", "image"),)
    before = samples(client)
    assert client.post("/api/search", data={"text": "a lighthouse", "mode": "text-to-text"}).status_code == 200
    picture = {"image": ("q.png", png_bytes(), "image/png")}
    assert client.post("/api/search", data={"mode": "image-to-image"}, files=picture).status_code == 200
    after = samples(client)
    for label in (text, image):
        count = "rag_encoder_batch_seconds_count", label
        assert after[count] - before.get(count, 0) == 1, label
        assert after["rag_encoder_batch_seconds_sum", label] > before.get(("rag_encoder_batch_seconds_sum", label), 0)
    assert (
        after["rag_encoder_batch_seconds_bucket", (*image, ("le", "+Inf"))]
        == after["rag_encoder_batch_seconds_count", image]
    )
