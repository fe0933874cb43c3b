"""The collect routes (app/collect.py) through the Flask client, on fake Kafka clients: the
record an event becomes, batches, validate-only, and every refusal of a bad request."""
from __future__ import annotations

import re
from typing import Any

import pytest

from app.delivery import get_pipeline
from tests.helpers import EVENT, REQUIRED, numbered, sent_by


def test_event_is_queued_as_the_internal_record(client, sent):
    body = {"action": "view", "object": "form", "vendor": "Vendor A", "product": "Product 1",
            "instance_id": "abc123", "label": "viewed the form", "score": 1.5,
            "page": {"url": "https://example.com/a"}, "tags": ["x", 1, None], "n": 7}
    response = client.post("/collect/1/2/event", json=body,
                           headers={"User-Agent": "curl/8.0", "Referer": "https://example.com/"})
    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    [record] = sent()
    assert record["topic"] == "events.1"
    assert record["key"] == "abc123"
    event = record["value"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        event.pop("event_id"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event.pop("received_at"))
    assert event == {
        "schema_version": 1, "account_id": "1", "tracker_id": "2",
        "action": "view", "object": "form", "vendor": "Vendor A", "product": "Product 1",
        "instance_id": "abc123", "label": "viewed the form", "score": 1.5,
        "properties": {"page": {"url": "https://example.com/a"}, "tags": ["x", 1, None], "n": 7},
        "standard_action": True,
        "context": {"ip": "127.0.0.1", "user_agent": "curl/8.0", "referer": "https://example.com/"},
    }


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in EVENT.items() if k != field}


BAD_INPUT = [
    # (request, status, message, errors)
    pytest.param({"data": b"{not json", "content_type": "application/json"}, 400,
                 "the body is not valid JSON: ", None, id="not-json"),
    pytest.param({"data": b'{"action": "caf\xe9"}', "content_type": "application/json"}, 400,
                 "the body is not valid UTF-8 (byte 15)", None, id="invalid-utf8"),
    pytest.param({"data": b"", "content_type": "application/json"}, 400,
                 "the body is empty: send the event as a JSON object", None, id="empty-body"),
    pytest.param({"json": [EVENT]}, 400, "the body must be a JSON object, not an array", None, id="array"),
    pytest.param({"json": "view"}, 400, "the body must be a JSON object, not a string", None, id="string"),
    pytest.param({"data": b"null", "content_type": "application/json"}, 400,
                 "the body must be a JSON object, not null", None, id="null"),
    pytest.param({"data": b"4.5", "content_type": "application/json"}, 400,
                 "the body must be a JSON object, not a number", None, id="number"),
    pytest.param({"data": b"true", "content_type": "application/json"}, 400,
                 "the body must be a JSON object, not a boolean", None, id="boolean"),
    *[pytest.param({"json": _without(f)}, 400, f"the event was not tracked: {f} is required",
                   {f: ["is required"]}, id=f"{f}-missing") for f in REQUIRED],
    *[pytest.param({"json": {**EVENT, f: ""}}, 400, f"the event was not tracked: {f} must not be empty",
                   {f: ["must not be empty"]}, id=f"{f}-empty") for f in REQUIRED],
    *[pytest.param({"json": {**EVENT, f: "  "}}, 400, f"the event was not tracked: {f} must not be empty",
                   {f: ["must not be empty"]}, id=f"{f}-blank") for f in REQUIRED],
    *[pytest.param({"json": {**EVENT, f: 12}}, 400, f"the event was not tracked: {f} must be a string",
                   {f: ["must be a string"]}, id=f"{f}-number") for f in REQUIRED],
    *[pytest.param({"json": {**EVENT, f: None}}, 400, f"the event was not tracked: {f} must be a string",
                   {f: ["must be a string"]}, id=f"{f}-null") for f in REQUIRED],
    pytest.param({"json": {**EVENT, "label": 3}}, 400, "the event was not tracked: label must be a string",
                 {"label": ["must be a string"]}, id="label-number"),
    *[pytest.param({"json": {**EVENT, "score": v}}, 400, "the event was not tracked: score must be a number",
                   {"score": ["must be a number"]}, id=f"score-{v!r}") for v in (True, False, "1.5", None, [1])],
    *[pytest.param({"json": {**_without("instance_id"), "instance_id": "a", "instanceID": sdk}}, 400,
                   "the event was not tracked: instance_id must not come with instanceID: send one of them",
                   {"instance_id": ["must not come with instanceID: send one of them"]}, id=f"two-instance-ids-{sdk}")
      for sdk in ("a", "b")],
    pytest.param({"data": b"{}", "content_type": "application/xml"}, 415,
                 "Content-Type must be application/json or text/plain, not application/xml", None,
                 id="xml"),
    pytest.param({"data": b"a=b", "content_type": "application/x-www-form-urlencoded"}, 415,
                 "Content-Type must be application/json or text/plain, not application/x-www-form-urlencoded"
                 " (curl -d sends that: add -H 'Content-Type: application/json')",
                 None, id="form"),
    pytest.param({"data": b"{}", "content_type": "application/json; charset=latin-1"}, 415,
                 "the body must be UTF-8, not latin-1", None, id="latin-1"),
    pytest.param({"data": b'{"a": "' + b"x" * 70_000 + b'"}', "content_type": "application/json"}, 413,
                 "the body is larger than the limit of 65536 bytes", None, id="too-large"),
]


@pytest.mark.parametrize(("request_kwargs", "status", "message", "errors"), BAD_INPUT)
def test_bad_input_is_refused_and_not_queued(app, client, sent, request_kwargs, status, message, errors):
    response = client.post("/collect/1/1/event", **request_kwargs)
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert body["code"] == status
    assert body["message"].startswith(message)
    assert body.get("errors") == errors
    assert sent() == []


# -- batches and validate-only ----------------------------------------------------------------

def test_a_mixed_batch_queues_the_valid_events_in_order(client, sent):
    batch = [numbered(0), {"action": "view"}, numbered(1), "not an event", numbered(2, score=True), numbered(3)]
    response = client.post("/collect/1/1/events", json=batch, headers={"User-Agent": "backend/2"})
    assert response.status_code == 200
    assert response.get_json() == {"accepted": 3, "rejected": [
        {"index": 1, "errors": {"instance_id": ["is required"], "object": ["is required"],
                                "product": ["is required"], "vendor": ["is required"]}},
        {"index": 3, "errors": {"_schema": ["must be a JSON object, not a string"]}},
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
    (numbered(0), 400, "the body must be a JSON array of events, not an object"),
    ([numbered(i) for i in range(101)], 400, "the batch holds 101 events, more than the 100 allowed"),
    ([numbered(i, pad="x" * 1000) for i in range(70)], 413, "the body is larger than the limit of 65536 bytes"),
])
def test_batch_limits(client, sent, body, status, message):
    response = client.post("/collect/1/1/events", json=body)
    assert response.status_code == status
    assert response.get_json() == {"code": status, "message": message}
    assert sent() == []


UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def test_validate_only_shows_the_record_and_queues_nothing(client, sent):
    response = client.post("/collect/007/2/event?validate=true", json=numbered(5, label="x"))
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


def test_validate_only_shows_the_record_exactly_as_it_is_queued(app, client):
    """Byte for byte, but for the event's id and time: the same fields in the same order."""
    body = numbered(5, label="x", score=1.5, page={"b": 1, "a": "é"})
    shown = client.post("/collect/1/1/event?validate=true", json=body).data
    assert client.post("/collect/1/1/event", json=body).status_code == 204
    assert len(sent_by(app)) == 1
    [(_, _, queued)] = get_pipeline(app).sender.producer.sent  # the record's bytes
    fresh = re.compile(rb'"(event_id|received_at)":"[^"]*"')
    assert fresh.sub(b"", shown) == b'{"topic":"events.1","key":"i5","value":' + fresh.sub(b"", queued) + b"}\n"


def test_validate_only_on_a_batch(client, sent):
    response = client.post("/collect/1/1/events?validate=true", json=[numbered(0), {}, numbered(1)])
    assert response.status_code == 200
    body = response.get_json()
    assert body["accepted"] == 2 and [r["index"] for r in body["rejected"]] == [1]
    assert [e["value"]["instance_id"] for e in body["events"]] == ["i0", "i1"]
    assert [e["topic"] for e in body["events"]] == ["events.1", "events.1"]
    assert sent() == []


def test_validate_must_be_true_or_false(client, sent):
    response = client.post("/collect/1/1/event?validate=maybe", json=numbered(0))
    assert response.status_code == 400
    assert response.get_json()["message"] == "validate must be true or false, not maybe"
    assert client.post("/collect/1/1/event?validate=false", json=numbered(1)).status_code == 204
    assert len(sent()) == 1
