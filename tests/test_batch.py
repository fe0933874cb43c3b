"""The batch endpoint and validate-only mode."""
from __future__ import annotations

import re

import pytest

from tests.helpers import sent_by

EVENT = {"action": "view", "object": "form", "vendor": "V", "product": "P"}


def ev(i: int, **extra):
    return {**EVENT, "instance_id": f"i{i}", "n": i, **extra}


def test_a_mixed_batch_queues_the_valid_events_in_order(client, sent):
    batch = [ev(0), {"action": "view"}, ev(1), "not an event", ev(2, score=True), ev(3)]
    response = client.post("/collect/1/1/events", json=batch, headers={"User-Agent": "backend/2"})
    assert response.status_code == 200
    assert response.get_json() == {"accepted": 3, "rejected": [
        {"index": 1, "errors": {"instance_id": ["is required"], "object": ["is required"],
                                "product": ["is required"], "vendor": ["is required"]}},
        {"index": 3, "errors": {"_schema": ["must be a JSON object, not str"]}},
        {"index": 4, "errors": {"score": ["must be a number"]}},
    ]}
    records = sent()
    assert [r["value"]["properties"]["n"] for r in records] == [0, 1, 3]
    assert len({r["value"]["event_id"] for r in records}) == 3
    assert all(r["value"]["context"] == {"ip": "127.0.0.1", "user_agent": "backend/2"} for r in records)


def test_a_batch_with_no_valid_event_queues_nothing(client, sent):
    response = client.post("/collect/1/1/events", json=[{}, 1])
    assert response.status_code == 200
    assert response.get_json()["accepted"] == 0
    assert [r["index"] for r in response.get_json()["rejected"]] == [0, 1]
    assert sent() == []


@pytest.mark.parametrize(("body", "status", "message"), [
    ([], 400, "the batch is empty: send at least one event"),
    (ev(0), 400, "the body must be a JSON array of events, not dict"),
    ([ev(i) for i in range(101)], 400, "the batch holds 101 events; at most 100 are allowed"),
    ([ev(i, pad="x" * 1000) for i in range(70)], 413, "the body is larger than the limit of 65536 bytes"),
])
def test_batch_limits(client, sent, body, status, message):
    response = client.post("/collect/1/1/events", json=body)
    assert response.status_code == status
    assert response.get_json() == {"code": status, "message": message}
    assert sent() == []


def test_a_batch_the_log_cannot_keep_is_queued_not_at_all(make_app):
    app = make_app(COLLECTOR_SPOOL_MAX_BYTES=1024**2, COLLECTOR_MAX_BODY_BYTES=900 * 1024)
    client = app.test_client()
    first = [ev(i, pad="x" * 8000) for i in range(90)]  # 90 events of 8 kB, then 40 more: over the log's 1 MiB
    assert client.post("/collect/1/1/events", json=first).get_json()["accepted"] == 90
    response = client.post("/collect/1/1/events", json=[ev(i, pad="x" * 8000) for i in range(90, 130)])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["message"].startswith("none of the 40 events was tracked: the log on disk cannot keep")
    assert [r["value"]["properties"]["n"] for r in sent_by(app)] == list(range(90))


def test_with_the_log_unwritable_a_batch_is_refused_whole(make_app, unwritable_spool):
    client = make_app(COLLECTOR_SPOOL_DIR=unwritable_spool).test_client()
    response = client.post("/collect/1/1/events", json=[ev(i) for i in range(3)])
    assert response.status_code == 503
    assert response.get_json()["message"].startswith("none of the 3 events was tracked: the log on disk cannot keep")


UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def test_validate_only_shows_the_record_and_queues_nothing(client, sent):
    response = client.post("/collect/007/2/event?validate=true", json=ev(5, label="x"))
    assert response.status_code == 200
    shown = response.get_json()
    assert shown["topic"] == "events.7" and shown["key"] == "i5"
    event = shown["value"]
    assert re.fullmatch(UUID4, event.pop("event_id"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event.pop("received_at"))
    assert event == {"schema_version": 1, "account_id": "7", "tracker_id": "2", "action": "view",
                     "object": "form", "vendor": "V", "product": "P", "instance_id": "i5", "label": "x",
                     "properties": {"n": 5}, "standard_action": True,
                     "context": {"ip": "127.0.0.1", "user_agent": "Werkzeug/3.1.9"}}
    bad = client.post("/collect/1/1/event?validate=true", json={"action": ""})
    real = client.post("/collect/1/1/event", json={"action": ""})
    assert bad.status_code == real.status_code == 400
    assert bad.get_json() == real.get_json()
    assert sent() == []


def test_validate_only_on_a_batch(client, sent):
    response = client.post("/collect/1/1/events?validate=true", json=[ev(0), {}, ev(1)])
    assert response.status_code == 200
    body = response.get_json()
    assert body["accepted"] == 2 and [r["index"] for r in body["rejected"]] == [1]
    assert [e["value"]["instance_id"] for e in body["events"]] == ["i0", "i1"]
    assert [e["topic"] for e in body["events"]] == ["events.1", "events.1"]
    assert sent() == []


def test_validate_must_be_true_or_false(client, sent):
    response = client.post("/collect/1/1/event?validate=maybe", json=ev(0))
    assert response.status_code == 400
    assert response.get_json()["message"] == "validate must be true or false, not maybe"
    assert client.post("/collect/1/1/event?validate=false", json=ev(1)).status_code == 204
    assert len(sent()) == 1
