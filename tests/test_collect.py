"""The collect route against a fake Kafka producer: the record it makes, and every refusal."""
from __future__ import annotations

import re
from typing import Any

import pytest

EVENT = {"action": "view", "object": "form", "vendor": "Vendor A", "product": "Product 1",
         "instance_id": "abc123"}
REQUIRED = ("action", "object", "vendor", "product", "instance_id")


def test_event_is_queued_as_the_internal_record(client, sent):
    body = {**EVENT, "label": "viewed the form", "score": 1.5,
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


@pytest.mark.parametrize(("aid", "tid", "account_id", "tracker_id"), [
    ("42", "7", "42", "7"),
    ("007", "0010", "7", "10"),
    ("3F2504E0-4F89-11D3-9A0C-0305E82C3301", "1", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "1"),
])
def test_ids_are_stored_in_one_spelling(client, sent, aid, tid, account_id, tracker_id):
    assert client.post(f"/collect/{aid}/{tid}/event", json=EVENT).status_code == 204
    [record] = sent()
    assert record["topic"] == f"events.{account_id}"
    assert (record["value"]["account_id"], record["value"]["tracker_id"]) == (account_id, tracker_id)


@pytest.mark.parametrize(("body", "instance_id", "properties"), [
    ({**EVENT, "instance_id": "chat-9"}, "chat-9", {}),
    ({k: v for k, v in EVENT.items() if k != "instance_id"} | {"instanceID": "chat-9"}, "chat-9", {}),
])
def test_sdk_spelling_of_instance_id(client, sent, body, instance_id, properties):
    assert client.post("/collect/1/1/event", json=body).status_code == 204
    [record] = sent()
    assert record["key"] == instance_id
    assert record["value"]["instance_id"] == instance_id
    assert record["value"]["properties"] == properties


@pytest.mark.parametrize(("action", "standard"), [("view", True), ("Submit", True), ("chatted", False)])
def test_custom_actions_are_kept_and_flagged(client, sent, action, standard):
    assert client.post("/collect/1/1/event", json={**EVENT, "action": action}).status_code == 204
    [record] = sent()
    assert (record["value"]["action"], record["value"]["standard_action"]) == (action, standard)


@pytest.mark.parametrize("content_type", [None, "text/plain;charset=UTF-8", "application/json; charset=utf-8"])
def test_accepted_content_types(client, sent, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/collect/1/1/event", data=b'{"action":"view","object":"form","vendor":"V",'
                           b'"product":"P","instance_id":"i"}', headers=headers)
    assert response.status_code == 204
    assert len(sent()) == 1


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
    pytest.param({"json": [EVENT]}, 400, "the body must be a JSON object, not list", None, id="array"),
    pytest.param({"json": "view"}, 400, "the body must be a JSON object, not str", None, id="string"),
    pytest.param({"data": b"null", "content_type": "application/json"}, 400,
                 "the body must be a JSON object, not NoneType", None, id="null"),
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


BAD_PATHS = [
    ("/collect/abc/1/event", "aid"), ("/collect/1/abc/event", "tid"), ("/collect/0/1/event", "aid"),
    ("/collect/-1/1/event", "aid"), ("/collect/1.5/1/event", "aid"), ("/collect/%D9%A1%D9%A2/1/event", "aid"),
    ("/collect/1/3f2504e04f8911d39a0c0305e82c3301/event", "tid"), ("/collect/123456789012345678901/1/event", "aid"),
    ("/collect/1%0A/1/event", "aid"), ("/collect/..%2F1/1/event", None), ("/collect/1/1/eventz", None),
]


@pytest.mark.parametrize(("path", "field"), BAD_PATHS)
def test_malformed_ids_are_404(client, sent, path, field):
    response = client.post(path, json=EVENT)
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == 404
    if field:
        assert body["errors"] == {field: ["must be a positive decimal number or a UUID"]}
        assert body["message"] == f"no such collect path: {field} must be a positive decimal number or a UUID"
    assert sent() == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_with_allow(client, sent, method):
    response = client.open("/collect/1/1/event", method=method, json=EVENT)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert response.get_json()["message"].startswith(f"{method} is not allowed here")
    assert sent() == []
