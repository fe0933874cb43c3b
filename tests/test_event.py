"""The internal event (app/event.py): what an accepted body becomes, the SDK's spelling, custom
actions, the schemas' properties (Hypothesis), and the limits on an event's size."""
from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from app.event import EventIds, Limits, make_event, now_rfc3339
from tests.helpers import EVENT, REQUIRED, refused, sent_by


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


# -- the schemas' properties ----------------------------------------------------------------

KNOWN = {*REQUIRED, "label", "score", "instanceID"}


LIMITS = Limits(depth=10, fields=100, string=8192, key=128)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


non_blank = st.text(min_size=1, max_size=30).filter(str.strip)


extras = st.dictionaries(st.text(max_size=20).filter(lambda k: k not in KNOWN), json_values, max_size=8)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(required=st.fixed_dictionaries({f: non_blank for f in REQUIRED}), extra=extras)
def test_any_object_with_the_required_fields_is_accepted_and_the_rest_kept(required, extra):
    event = make_event("e", "1", "1", {**extra, **required}, {}, LIMITS)
    assert {f: event[f] for f in REQUIRED} == required
    assert event["properties"] == extra


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(REQUIRED), extra=extras, data=st.data())
def test_a_missing_or_corrupt_required_field_is_refused_by_name(field, extra, data):
    body = {**extra, **EVENT}
    corruption = data.draw(st.sampled_from(["missing", "empty", "blank", "number", "null", "list"]))
    if corruption == "missing":
        del body[field]
    else:
        body[field] = {"empty": "", "blank": " \t", "number": 7, "null": None, "list": ["x"]}[corruption]
    with pytest.raises(ValidationError) as info:
        make_event("e", "1", "1", body, {}, LIMITS)
    assert field in info.value.normalized_messages()


# -- limits: each a clear 4xx, nothing queued -------------------------------------------------

def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


LIMIT_CASES = [
    pytest.param(json.dumps({**EVENT, "deep": nested(10)}), 400, {"deep.a.a.a.a.a.a.a.a.a": [
        "is nested deeper than 10 levels"]}, id="depth"),
    pytest.param(json.dumps({**EVENT, **{f"f{i}": i for i in range(96)}}), 400, {"_schema": [
        "has more than 100 fields"]}, id="fields"),
    pytest.param(json.dumps({**EVENT, "p": {f"f{i}": i for i in range(101)}}), 400, {"p": [
        "has more than 100 fields"]}, id="nested-fields"),
    pytest.param(json.dumps({**EVENT, "tags": list(range(101))}), 400, {"tags": [
        "has more than 100 items"]}, id="array-items"),
    pytest.param(json.dumps({**EVENT, "note": "x" * 8193}), 400, {"note": ["is longer than 8192 characters"]},
                 id="string"),
    pytest.param(json.dumps({**EVENT, "action": "x" * 8193}), 400, {"action": ["is longer than 8192 characters"]},
                 id="known-string"),
    pytest.param(json.dumps({**EVENT, "k" * 129: 1}), 400, {"_schema": ["has a key longer than 128 characters"]},
                 id="key"),
    pytest.param(json.dumps({**EVENT, "p": {"k" * 129: 1}}), 400, {"p": ["has a key longer than 128 characters"]},
                 id="nested-key"),
]


@pytest.mark.parametrize(("body", "status", "errors"), LIMIT_CASES)
def test_limits(client, sent, body, status, errors):
    refused(client.post("/collect/1/1/event", data=body.encode(), content_type="application/json"),
            status, errors, sent)


@pytest.mark.parametrize(("setting", "value", "extra", "errors"), [
    ("COLLECTOR_MAX_DEPTH", 2, {"p": {"q": {"r": 1}}}, {"p.q": ["is nested deeper than 2 levels"]}),
    ("COLLECTOR_MAX_FIELDS", 10, {f"f{i}": i for i in range(6)}, {"_schema": ["has more than 10 fields"]}),
    ("COLLECTOR_MAX_STRING", 64, {"note": "x" * 65}, {"note": ["is longer than 64 characters"]}),
    ("COLLECTOR_MAX_KEY", 8, {"k" * 9: 1}, {"_schema": ["has a key longer than 8 characters"]}),
])
def test_the_limits_are_the_settings(make_app, setting, value, extra, errors):
    app = make_app(**{setting: value})
    response = app.test_client().post("/collect/1/1/event", json={**EVENT, **extra})
    assert (response.status_code, response.get_json()["errors"]) == (400, errors)
    assert sent_by(app) == []


def test_received_at_is_now_in_utc_to_the_millisecond():
    before = datetime.now(UTC)
    text = now_rfc3339()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    received = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(milliseconds=1) <= received <= after


def test_event_ids_are_random_uuids_and_a_forked_child_makes_its_own():
    ids = EventIds()
    made = [ids() for _ in range(EventIds.SIZE // 16 + 10)]  # past one read of the kernel's bytes
    assert len(set(made)) == len(made)
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in made)
    ids()  # the bytes for the next ids are in hand: a child must not reuse them
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, " ".join(ids() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode().split()
    os.close(read)
    parent = [ids() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(parent)
