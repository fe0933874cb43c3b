"""The marshmallow schemas: what a request may hold, and the internal event built from it."""
from __future__ import annotations

import math
import time
import uuid
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate

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

_NON_BLANK = validate.Regexp(r"(?s).*\S", error="must not be empty")
_ID_PATTERN = r"0{0,20}[1-9][0-9]{0,19}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class Number(fields.Field):
    """A JSON number: no strings, no booleans, finite; kept as given (int stays int)."""

    default_error_messages = {"invalid": "must be a number", "null": "must be a number"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("invalid")
        return value


def _text(required: bool = True) -> fields.String:
    return fields.String(
        required=required,
        validate=_NON_BLANK if required else None,
        error_messages={
            "required": "is required",
            "invalid": "must be a string",
            "null": "must be a string",
        },
    )


class PathSchema(Schema):
    """The ids in the path: a positive decimal number (no leading zeros kept) or a UUID."""

    aid = fields.String(required=True, validate=validate.Regexp(rf"(?:{_ID_PATTERN})\Z", error=ID_MESSAGE))
    tid = fields.String(required=True, validate=validate.Regexp(rf"(?:{_ID_PATTERN})\Z", error=ID_MESSAGE))

    @post_load
    def canonical(self, data: dict[str, str], **kwargs: Any) -> dict[str, str]:
        """One spelling per id, so one account is one topic: UUIDs lower-case, numbers unpadded."""
        return {k: v.lower() if "-" in v else str(int(v)) for k, v in data.items()}


class EventSchema(Schema):
    """The body of ``POST /collect/{aid}/{tid}/event``; unknown fields go to ``properties``."""

    class Meta:
        unknown = INCLUDE

    action = _text()
    object = _text()
    vendor = _text()
    product = _text()
    instance_id = _text()
    label = fields.String(error_messages={"invalid": "must be a string", "null": "must be a string"})
    score = Number()

    KNOWN = ("action", "object", "vendor", "product", "instance_id", "label", "score")

    @pre_load
    def sdk_spelling(self, data: Any, **kwargs: Any) -> Any:
        """Accept the Web SDK's ``instanceID`` for ``instance_id``."""
        if isinstance(data, dict) and "instanceID" in data:
            data = dict(data)
            sdk = data.pop("instanceID")
            if "instance_id" not in data:
                data["instance_id"] = sdk
            elif data["instance_id"] != sdk:
                raise ValidationError("differs from instanceID; send one of them", "instance_id")
        return data

    @post_load
    def split_properties(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Known fields at the top; every other field, unchanged, under ``properties``."""
        event = {k: data.pop(k) for k in self.KNOWN if k in data}
        event["properties"] = data
        return event


event_schema = EventSchema()
path_schema = PathSchema()


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with milliseconds, e.g. ``2026-11-26T09:31:56.123Z``."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def make_event(
    event_id: str, account_id: str, tracker_id: str, body: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """Curate a request body (a JSON object) into the internal event; raises ``ValidationError``."""
    curated = event_schema.load(body)
    return {
        "event_id": event_id,
        "schema_version": SCHEMA_VERSION,
        "account_id": account_id,
        "tracker_id": tracker_id,
        "received_at": now_rfc3339(),
        **curated,
        "standard_action": curated["action"].lower() in STANDARD_ACTIONS,
        "context": context,
    }


def new_event_id() -> str:
    """A fresh event id."""
    return str(uuid.uuid4())
