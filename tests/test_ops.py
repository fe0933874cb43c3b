"""The operators' routes (app/ops.py): /healthz, /readyz, /metrics."""
from __future__ import annotations

from tests.fakes import FakeKafkaAdmin
from tests.helpers import EVENT, metric, sent_by, wait_until


def test_healthz(client):
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_follows_whether_kafka_answers(make_app, monkeypatch):
    app = make_app()
    client = app.test_client()
    assert client.get("/readyz").status_code == 503  # nothing heard yet: not started
    client.post("/collect/1/1/event", json=EVENT)  # starts the pipeline; its probe asks Kafka
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")
    assert client.get("/readyz").get_json() == {"status": "ready"}

    def no_answer(self):
        raise TimeoutError("Kafka is away")

    monkeypatch.setattr(FakeKafkaAdmin, "describe_cluster", no_answer)
    app2 = make_app(COLLECTOR_READY_MAX_AGE_MS=1000)
    client2 = app2.test_client()
    client2.post("/collect/1/1/event", json=EVENT)
    sent_by(app2)
    wait_until(lambda: "Kafka is away" in (client2.get("/readyz").get_json().get("reason") or ""),
               what="unready with the reason")
    response = client2.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unready"


def test_metrics_count_requests_by_route_and_events_by_outcome(client, sent):
    before = client.get("/metrics").get_data(as_text=True)
    for _ in range(3):
        client.post("/collect/1/1/event", json=EVENT)
    client.post("/collect/1/1/event", json={})
    client.post("/collect/evil-path/1/event", json=EVENT)
    client.get("/collect/1/1/event")  # a real route, the wrong method
    client.post("/collect/1/1/event/", json=EVENT)  # no route
    sent()
    after = client.get("/metrics").get_data(as_text=True)

    def delta(name: str) -> float:
        return metric(after, name) - metric(before, name)

    route = 'route="/collect/<aid>/<tid>/event"'
    assert delta(f'collector_http_requests_total{{{route},status="204"}}') == 3
    assert delta(f'collector_http_requests_total{{{route},status="400"}}') == 1
    assert delta(f'collector_http_requests_total{{{route},status="404"}}') == 1
    assert delta(f'collector_http_requests_total{{{route},status="405"}}') == 1, "under its route"
    assert delta('collector_http_requests_total{route="unmatched",status="405"}') == 0
    assert delta('collector_http_requests_total{route="unmatched",status="404"}') == 1
    assert delta('collector_events_total{outcome="accepted"}') == 3
    assert delta('collector_events_total{outcome="delivered"}') == 3
    assert delta("collector_delivery_seconds_count") == 3
    assert delta('collector_rejects_total{outcome="published"}') == 2, "the 400 and the 404, not the 405"
    assert delta('collector_rejects_total{outcome="delivered"}') == 2, "apart from the events"
    assert "evil-path" not in after  # no label holds what a caller sent
