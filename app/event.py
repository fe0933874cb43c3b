"""The internal event: built from a request body that the schema accepts, within the limits."""
from __future__ import annotations

import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

from marshmallow import ValidationError

from .schemas import event_schema

if TYPE_CHECKING:
    from .config import Settings

#: The event specification's standard actions; any other action is a custom event.
STANDARD_ACTIONS = frozenset(
    a.lower()
    for a in (
        "View", "Select", "Change", "Open", "Close", "Start",
        "Cancel", "Complete", "Submit", "Marker", "Associate",
    )
)
SCHEMA_VERSION = 1
KNOWN = tuple(event_schema.fields)  # the fields kept at the top of the event


class Limits(NamedTuple):
    """How big an event may be, beyond the body's size."""

    depth: int  # nesting of objects and arrays, the event itself being level 1
    fields: int  # keys of any one object, items of any one array
    string: int  # characters in any string
    key: int  # characters in any key

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the settings give."""
        return cls(settings.max_depth, settings.max_fields, settings.max_string, settings.max_key)


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


class EventIds:
    """Random (version 4) UUIDs, as ``uuid.uuid4`` makes them, from the kernel's random bytes read
    4 KiB at a time: one ``getrandom`` for 256 events rather than one each. Alone, ``uuid4``
    costs 2 µs; amid a request (a cold system call), the request took 4 to 6 µs more of its ~100
    in the app with it than with these (bench/profile.md). A forked child drops the bytes it was
    born with, so no two processes hand out the same ids."""

    SIZE = 4096

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # guards _bytes and _at: any thread of the process may make ids
        self._bytes, self._at = b"", 0

    def __call__(self) -> str:
        with self._lock:
            if self._at >= len(self._bytes):
                self._bytes, self._at = os.urandom(self.SIZE), 0
            chunk = self._bytes[self._at:self._at + 16]
            self._at += 16
        return str(uuid.UUID(bytes=chunk, version=4))


new_event_id = EventIds()  # a fresh event id: new_event_id()
