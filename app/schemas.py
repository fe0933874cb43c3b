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


class ErrorSchema(Schema):
    """Every error's body."""

    code = fields.Integer(required=True, metadata={"description": "the HTTP status"})
    message = fields.String(required=True, metadata={"description": "what is wrong, in a sentence"})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "why, by field (or _schema for the whole event)"})


class RecordSchema(Schema):
    """A Kafka record, as validate-only shows it."""

    topic = fields.String(required=True)
    key = fields.String(required=True, metadata={"description": "the instance_id"})
    value = fields.Dict(required=True, metadata={"description": "the internal event"})


class RejectedSchema(Schema):
    """One event of a batch that was not tracked."""

    index = fields.Integer(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)


class BatchAnswerSchema(Schema):
    """The answer to a batch."""

    accepted = fields.Integer(required=True)
    rejected = fields.List(fields.Nested(RejectedSchema), required=True)
    events = fields.List(fields.Nested(RecordSchema), metadata={"description": "with ?validate=true"})
