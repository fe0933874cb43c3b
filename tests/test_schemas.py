"""The schemas (app/schemas.py): what an event may hold, and the shape of the answers."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from app.schemas import BatchAnswerSchema, ErrorSchema, EventSchema
from tests.helpers import EVENT

MISSING = object()


def test_an_event_loads_with_its_fields_and_every_unknown_one():
    body = {**EVENT, "label": "a lead", "score": 3, "page": {"url": "https://example.com/"}, "tags": [1, None]}
    loaded = EventSchema().load(body)
    assert loaded == body
    assert type(loaded["score"]) is int  # a number stays as sent


@pytest.mark.parametrize(("field", "value", "why"), [
    ("product", MISSING, "is required"),
    ("action", "", "must not be empty"),
    ("action", " \t\n", "must not be empty"),
    ("object", 3, "must be a string"),
    ("vendor", None, "must be a string"),
    ("instance_id", ["i1"], "must be a string"),
    ("label", 3, "must be a string"),
    ("score", True, "must be a number"),
    ("score", "1.5", "must be a number"),
    ("score", None, "must be a number"),
    ("score", float("nan"), "must be a number"),
    ("score", float("inf"), "must be a number"),
])
def test_a_bad_field_is_named_and_why(field, value, why):
    body = {k: v for k, v in EVENT.items() if k != field}
    if value is not MISSING:
        body[field] = value
    with pytest.raises(ValidationError) as info:
        EventSchema().load(body)
    assert info.value.normalized_messages() == {field: [why]}


def test_an_error_dumps_and_loads_as_one_shape():
    error = {"code": 400, "message": "the event was not tracked: action is required",
             "errors": {"action": ["is required"]}}
    assert ErrorSchema().dump(error) == error
    assert ErrorSchema().load(error) == error
    with pytest.raises(ValidationError) as info:
        ErrorSchema().load({"message": "no code"})
    assert list(info.value.normalized_messages()) == ["code"]


def test_a_batch_answer_dumps_with_the_rejected_events_and_why():
    answer = {"accepted": 1, "rejected": [{"index": 0, "errors": {"_schema": ["must be a JSON object, not a string"]}}],
              "events": [{"topic": "events.1", "key": "i1", "value": {"action": "view"}}]}
    assert BatchAnswerSchema().dump(answer) == answer
