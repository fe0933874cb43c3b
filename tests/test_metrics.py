"""The metrics (app/metrics.py): counts made while answering are added at the next flush, once."""
from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from app import metrics


def test_a_count_is_added_at_the_next_flush_and_only_once():
    registry = CollectorRegistry()
    counter = Counter("test_counted", "this test's own counter", registry=registry)

    def value() -> float | None:
        return registry.get_sample_value("test_counted_total")

    metrics.count(counter, 2)
    metrics.count(counter)
    assert value() == 0  # not yet: counts wait for the flush
    metrics.flush()
    assert value() == 3
    metrics.flush()
    assert value() == 3


def test_requests_are_counted_by_route_and_status_and_shown_without_a_flush():
    labels = {"route": "/test-metrics/<x>", "status": "204"}

    def shown() -> float:
        return REGISTRY.get_sample_value("collector_http_requests_total", labels) or 0.0

    before = shown()
    metrics.count_request("/test-metrics/<x>", 204)
    metrics.count_request("/test-metrics/<x>", 204)
    metrics.count_request("/test-metrics/<x>", 404)
    text, content_type = metrics.exposition()  # what /metrics answers: it flushes first
    assert content_type.startswith("text/plain")
    assert shown() == before + 2
    line = f'collector_http_requests_total{{route="/test-metrics/<x>",status="204"}} {before + 2}'
    assert line in text.decode().splitlines()
