"""The marshmallow schemas: what a request may hold, and the bodies of the answers."""
from __future__ import annotations

import math
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields

_BLANK = " \t\n\r\f\v"  # ASCII whitespace: what "blank" means here and in the OpenAPI pattern


def _non_blank(value: str) -> None:
    if not value.strip(_BLANK):
        raise ValidationError("must not be empty")


class Number(fields.Field):
    """A JSON number: no strings, no booleans, finite; kept as given (int stays int)."""

    default_error_messages = {"invalid": "must be a number", "null": "must be a number"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("invalid")
        return value


def _text(required: bool = True, description: str | None = None) -> fields.String:
    metadata = {"pattern": r"[^ \t\n\r\f\v]"} if required else {}
    if description:
        metadata["description"] = description
    return fields.String(
        required=required,
        validate=_non_blank if required else None,
        metadata=metadata,
        error_messages={
            "required": "is required",
            "invalid": "must be a string",
            "null": "must be a string",
        },
    )


class EventSchema(Schema):
    """The body of ``POST /collect/{aid}/{tid}/event``; unknown fields go to ``properties``
    (``make_event`` moves them, and takes ``instanceID`` for ``instance_id``)."""

    class Meta:
        unknown = INCLUDE

    action = _text()
    object = _text()
    vendor = _text(description="a vendor registered with the platform; when the registry lists vendors, one of "
                               "them, spelt exactly (otherwise a 400: is not registered)")
    product = _text(description="the vendor's product firing the event; when the registry lists the vendor's "
                                "products, one of them, spelt exactly")
    instance_id = _text()
    label = fields.String(error_messages={"invalid": "must be a string", "null": "must be a string"})
    score = Number()


event_schema = EventSchema()


def _about(description: str, example: Any) -> dict[str, Any]:
    return {"description": description, "example": example}


def _why(example: dict[str, list[str]], required: bool) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=required,
                       metadata=_about("why, by field (or _schema for the whole event)", example))


class ErrorSchema(Schema):
    """Every error's body."""

    code = fields.Integer(required=True, metadata=_about("the HTTP status", 400))
    message = fields.String(required=True, metadata=_about("what is wrong, in a sentence",
                                                           "the event was not tracked: action is required"))
    errors = _why({"action": ["is required"]}, required=False)


class ContextSchema(Schema):
    """What the request itself told about the sender."""

    ip = fields.String(required=True, metadata=_about("the client's address (behind proxies: COLLECTOR_PROXY_HOPS)",
                                                      "203.0.113.7"))
    user_agent = fields.String(required=True, allow_none=True, metadata=_about("null when not sent", "curl/8.5.0"))
    referer = fields.String(metadata=_about("only when sent", "https://www.example.com/pricing"))


class InternalEventSchema(Schema):
    """The internal event: the value of the Kafka record an event becomes, as JSON."""

    event_id = fields.UUID(required=True,
                           metadata=_about("made by the collector", "d2eef59e-33b2-40bf-ae74-dd04038958da"))
    schema_version = fields.Integer(required=True, metadata={"example": 1})
    account_id = fields.String(required=True, metadata=_about("aid, in its one spelling", "1"))
    tracker_id = fields.String(required=True, metadata=_about("tid, in its one spelling", "1"))
    received_at = fields.String(required=True,
                                metadata=_about("RFC 3339, UTC, milliseconds", "2026-11-26T10:33:00.718Z"))
    action = fields.String(required=True, metadata={"example": "View"})
    object = fields.String(required=True, metadata={"example": "page"})
    vendor = fields.String(required=True, metadata={"example": "Example Vendor"})
    product = fields.String(required=True, metadata={"example": "Example Product"})
    instance_id = fields.String(required=True, metadata={"example": "docs-example-1"})
    label = fields.String(metadata=_about("only when given", "pricing page viewed"))
    score = Number(metadata=_about("only when given", 1.5))
    properties = fields.Dict(required=True, metadata=_about("every other field of the body, unchanged",
                                                            {"page": "/pricing"}))
    standard_action = fields.Boolean(required=True, metadata=_about("one of the specification's actions", True))
    context = fields.Nested(ContextSchema, required=True)


class RecordSchema(Schema):
    """A Kafka record, as validate-only shows it."""

    topic = fields.String(required=True, metadata=_about("the account's topic", "events.1"))
    key = fields.String(required=True, metadata=_about("the instance_id", "docs-example-1"))
    value = fields.Nested(InternalEventSchema, required=True)


class RejectedSchema(Schema):
    """One event of a batch that was not tracked."""

    index = fields.Integer(required=True, metadata=_about("its place in the batch, from 0", 1))
    errors = _why({"instance_id": ["is required"]}, required=True)


class BatchAnswerSchema(Schema):
    """The answer to a batch."""

    accepted = fields.Integer(required=True, metadata=_about("how many were queued", 1))
    rejected = fields.List(fields.Nested(RejectedSchema), required=True)
    events = fields.List(fields.Nested(RecordSchema), metadata={"description": "with ?validate=true"})


def _may_be_null(description: str, example: Any) -> dict[str, Any]:
    return {"required": True, "allow_none": True, "metadata": _about(description, example)}


class RejectSchema(Schema):
    """A refused event: the value of its record on the rejects topic (COLLECTOR_REJECTS_TOPIC), as JSON."""

    received_at = fields.String(required=True, metadata=_about("RFC 3339, UTC, ms", "2026-11-29T23:40:00.718Z"))
    aid = fields.String(required=True, metadata=_about("the path's account id, as sent (the record's key)", "1"))
    tid = fields.String(required=True, metadata=_about("the path's tracker id, as sent", "1"))
    path = fields.String(required=True, metadata={"example": "/collect/1/1/event"})
    status = fields.Integer(required=True, metadata=_about("the answer's status; 400 for a batch's item", 400))
    message = fields.String(required=True, metadata={"example": "the event was not tracked: action is required"})
    errors = fields.Dict(**_may_be_null("why, by field; null when no field is at fault", {"action": ["is required"]}))
    index = fields.Integer(**_may_be_null("a refused item's place in its batch; null for a request", None))
    user_agent = fields.String(**_may_be_null("null when not sent", "sensor/2.1"))
    origin = fields.String(**_may_be_null("the browser's Origin; null when not sent", None))
    ip = fields.String(required=True, metadata=_about("the client's address (COLLECTOR_PROXY_HOPS)", "203.0.113.7"))
    body = fields.String(allow_none=True, metadata=_about(
        "the body's first COLLECTOR_REJECTS_EXCERPT_BYTES as text (a batch item's own JSON); absent with 0; "
        "null when it could not be read", '{"object": "form", "vendor": "Vendor A"}'))
    body_bytes = fields.Integer(allow_none=True, metadata=_about("the whole body's size; absent with "
                                                                 "COLLECTOR_REJECTS_EXCERPT_BYTES=0", 40))
