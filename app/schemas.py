"""The marshmallow schemas: what a request may hold, and the internal event built from it."""
from __future__ import annotations

import math
import re
import time
import uuid
from typing import Any, NamedTuple

from marshmallow import INCLUDE, Schema, ValidationError, fields

#: The event specification's standard actions; any other action is a custom event.
STANDARD_ACTIONS = frozenset(
    a.lower()
    for a in (
        "View", "Select", "Change", "Open", "Close", "Start",
        "Cancel", "Complete", "Submit", "Marker", "Associate",
    )
)
SCHEMA_VERSION = 1
ID_MESSAGE = "must be a positive decimal number or a UUID"



_BLANK = " \t\n\r\f\v"  # ASCII whitespace: what "blank" means here and in the OpenAPI pattern


def _non_blank(value: str) -> None:
    if not value.strip(_BLANK):
        raise ValidationError("must not be empty")

ID_PATTERN = r"0{0,20}[1-9][0-9]{0,19}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


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


_ID = re.compile(ID_PATTERN)


def canonical_id(value: str) -> str | None:
    """An account or tracker id in its one spelling (UUIDs lower-case, numbers unpadded), or
    None when it is neither a positive decimal number nor a UUID; one account is one topic."""
    if not _ID.fullmatch(value):
        return None
    return value.lower() if "-" in value else str(int(value))


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
KNOWN = tuple(event_schema.fields)  # the fields kept at the top of the event


class Limits(NamedTuple):
    """How big an event may be, beyond the body's size."""

    depth: int  # nesting of objects and arrays, the event itself being level 1
    fields: int  # keys of any one object, items of any one array
    string: int  # characters in any string
    key: int  # characters in any key


def limit_errors(body: dict[str, Any], limits: Limits) -> dict[str, list[str]]:
    """What in ``body`` is over ``limits``, by field path (at most 20 entries)."""
    errors: dict[str, list[str]] = {}
    stack: list[tuple[Any, str, int]] = [(body, "", 1)]
    while stack and len(errors) < 20:
        value, path, depth = stack.pop()
        if depth > limits.depth:
            errors[path] = [f"is nested deeper than {limits.depth} levels"]
            continue
        if isinstance(value, dict):
            if len(value) > limits.fields:
                errors[path or "_schema"] = [f"has more than {limits.fields} fields"]
                continue
            items: Any = value.items()
        elif len(value) > limits.fields:
            errors[path] = [f"has more than {limits.fields} items"]
            continue
        else:
            items = enumerate(value)
        for key, item in items:  # strings are checked here, only objects and arrays go on the stack
            if isinstance(key, str) and len(key) > limits.key:
                errors[path or "_schema"] = [f"has a key longer than {limits.key} characters"]
                continue
            if isinstance(item, str):
                if len(item) > limits.string:
                    errors[_child(path, key)] = [f"is longer than {limits.string} characters"]
            elif isinstance(item, (dict, list)):
                stack.append((item, _child(path, key), depth + 1))
    return dict(list(errors.items())[:20])


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


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


_second: tuple[int, str] = (0, "")  # the last second formatted, and its text


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with milliseconds, e.g. ``2026-11-26T09:31:56.123Z``."""
    global _second
    ms = int(time.time() * 1000)
    second = ms // 1000
    if second != _second[0]:  # formatted once a second, not once an event
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{ms % 1000:03d}Z"


def make_event(
    event_id: str, account_id: str, tracker_id: str, body: dict[str, Any], context: dict[str, Any],
    limits: Limits,
) -> dict[str, Any]:
    """Curate a request body (a JSON object) into the internal event; raises ``ValidationError``."""
    if errors := limit_errors(body, limits):
        raise ValidationError(errors)
    if "instanceID" in body:  # the Web SDK's spelling of instance_id: one of them, not both
        if "instance_id" in body:
            raise ValidationError({"instance_id": ["must not come with instanceID: send one of them"]})
        body = dict(body)
        body["instance_id"] = body.pop("instanceID")
    # Written out here rather than as pre_load/post_load hooks: the hooks cost a quarter of
    # the schema's load in the benchmark's profile.
    loaded = event_schema.load(body)
    curated = {k: loaded.pop(k) for k in KNOWN if k in loaded}
    return {
        "event_id": event_id,
        "schema_version": SCHEMA_VERSION,
        "account_id": account_id,
        "tracker_id": tracker_id,
        "received_at": now_rfc3339(),
        **curated,
        "properties": loaded,  # every other field, unchanged
        "standard_action": curated["action"].lower() in STANDARD_ACTIONS,
        "context": context,
    }


def new_event_id() -> str:
    """A fresh event id."""
    return str(uuid.uuid4())
