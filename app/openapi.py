"""The OpenAPI 3 document of the HTTP API, built from the marshmallow schemas (apispec)."""
from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify

from .config import Settings, get_settings
from .ids import ID_PATTERN
from .schemas import BatchAnswerSchema, ErrorSchema, EventSchema, Number, RecordSchema, RejectSchema

bp = Blueprint("openapi", __name__)
EXTENSION = "collector.openapi"
#: Each error a collect route answers: when, and an answer the collector gives (test_openapi.py checks them).
ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("the body or a field is wrong, a vendor or product the registry does not list included",
          {"code": 400, "message": "the event was not tracked: action is required",
           "errors": {"action": ["is required"]}}),
    403: ("an origin not allowed", {"code": 403, "message": "origin https://evil.example may not send events here"}),
    404: ("no such account, tracker or route", {"code": 404, "message": "no such collect path: account 5 is not "
                                                "registered", "errors": {"aid": ["account 5 is not registered"]}}),
    408: ("the body stopped arriving",
          {"code": 408, "message": "the body ended early or did not arrive within 10000 ms"}),
    413: ("the body is too large", {"code": 413, "message": "the body is larger than the limit of 65536 bytes"}),
    415: ("another Content-Type, charset or Content-Encoding",
          {"code": 415, "message": "Content-Type must be application/json or text/plain, not application/x-www-"
                                   "form-urlencoded (curl -d sends that: add -H 'Content-Type: application/json')"}),
    503: ("the collector cannot keep the event now (retry after Retry-After seconds)",
          {"code": 503, "message": "the event was not tracked: the collector is shutting down"}),
}
#: The event that Try it out on /docs sends as it stands (to account 1, tracker 1); the validate-only
#: record's example is what it becomes. Its vendor and product are placeholders: where the registry
#: lists vendors, it is refused (400) until edited.
EXAMPLE = {"action": "View", "object": "page", "vendor": "Example Vendor", "product": "Example Product",
           "instance_id": "docs-example-1", "label": "pricing page viewed", "page": "/pricing"}
DESCRIPTION = ("Tracks events: POST them, they are queued on the account's Kafka topic (each as the schema "
               "Record shows). Every event refused (an answer 4xx, a batch's rejected item) is also a record on the "
               "one topic {topic}, keyed by the account id as sent, its value the schema Reject; rate-limited "
               "(COLLECTOR_REJECTS_PER_SECOND, COLLECTOR_REJECTS_PER_ACCOUNT).")
TAGS = [{"name": "collect", "description": "Send events: each is queued on its account's Kafka topic"},
        {"name": "operations", "description": "For the people who run the collector: health, metrics, this "
                                              "document"}]


def _json(schema: str | dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"content": {"application/json": media}}


def _errors(*codes: int) -> dict[int, Any]:
    return {code: {"description": ERRORS[code][0], **_json("Error", ERRORS[code][1])} for code in codes}


def build(settings: Settings) -> dict[str, Any]:
    """The document, from the schemas and the settings."""
    plugin = MarshmallowPlugin()
    spec = APISpec("collector", "1", "3.1.0", plugins=[plugin], tags=TAGS,
                   info={"description": DESCRIPTION.format(topic=settings.rejects_topic)})
    plugin.map_to_openapi_type(Number, "number", None)
    for name, schema in (("Error", ErrorSchema), ("Record", RecordSchema), ("BatchAnswer", BatchAnswerSchema),
                         ("Reject", RejectSchema)):
        spec.components.schema(name, schema=schema)
    spec.components.schema("Event", schema=EventSchema)
    event = _event(spec.to_dict()["components"]["schemas"]["Event"], settings)
    _collect_paths(spec, settings.max_batch)
    _ops_paths(spec)
    document = spec.to_dict()
    document["components"]["schemas"]["Event"] = event
    document["components"]["schemas"]["Property"] = _property(settings)
    return document


def _event(event: dict[str, Any], s: Settings) -> dict[str, Any]:
    """The Event schema as apispec made it, with what marshmallow cannot say: instance_id or
    instanceID, and every other field kept within the limits."""
    event["required"] = [f for f in event["required"] if f != "instance_id"]
    event["oneOf"] = [{"required": ["instance_id"]}, {"required": ["instanceID"]}]
    event["properties"]["instanceID"] = event["properties"]["instance_id"]
    event["propertyNames"] = {"maxLength": s.max_key}
    event["maxProperties"] = s.max_fields
    event["additionalProperties"] = {"$ref": "#/components/schemas/Property"}
    for field in event["properties"].values():
        if field["type"] == "string":
            field["maxLength"] = s.max_string
    return event


def _property(s: Settings) -> dict[str, Any]:
    """Any other field of an event, kept under properties: a JSON value within the limits. One
    definition per level of nesting, inside this one schema, says how deep a value may go (the
    event itself is level 1, its fields level 2)."""
    def level(n: int) -> dict[str, Any]:
        scalars: list[dict[str, Any]] = [{"type": ["number", "boolean", "null"]},
                                         {"type": "string", "maxLength": s.max_string}]
        inner = {"$ref": f"#/components/schemas/Property/$defs/level{n + 1}"}
        containers = [{"type": "array", "maxItems": s.max_fields, "items": inner},
                      {"type": "object", "maxProperties": s.max_fields, "propertyNames": {"maxLength": s.max_key},
                       "additionalProperties": inner}]
        return {"anyOf": scalars + (containers if n <= s.max_depth else [])}

    return {**level(2), "description": f"any JSON value, kept unchanged: objects and arrays nested at most "
                                       f"{s.max_depth} levels deep (the event is level 1), each with at most "
                                       f"{s.max_fields} items, strings of at most {s.max_string} characters",
            "example": "/pricing", "$defs": {f"level{n}": level(n) for n in range(3, s.max_depth + 2)}}


def _collect_paths(spec: APISpec, limit: int) -> None:
    ids = [{"name": n, "in": "path", "required": True, "description": d,
            "schema": {"type": "string", "pattern": f"^(?:{ID_PATTERN})$"}, "example": "1"}
           for n, d in (("aid", "the account: a positive number or a UUID"), ("tid", "the tracker"))]
    validate = {"name": "validate", "in": "query", "required": False,
                "description": "true: queue nothing, answer with the record(s) as they would be queued",
                "schema": {"type": "string", "enum": ["true", "false"]}}
    spec.path("/collect/{aid}/{tid}/event", parameters=ids, operations={"post": {
        "tags": ["collect"], "summary": "Track one event", "parameters": [validate],
        "requestBody": {"required": True, "content": {"application/json": {"schema": "Event", "example": EXAMPLE}}},
        "responses": {204: {"description": "queued"}, 200: {"description": "validate-only", **_json("Record")},
                      **_errors(400, 403, 404, 408, 413, 415, 503)},
    }})
    spec.path("/collect/{aid}/{tid}/events", parameters=ids, operations={"post": {
        "tags": ["collect"], "summary": "Track a batch of events, each on its own", "parameters": [validate],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "array", "minItems": 1, "maxItems": limit,
            "description": "each item is checked against Event on its own: a bad one is rejected alone",
            "items": {}}, "example": [EXAMPLE, {k: v for k, v in EXAMPLE.items() if k != "instance_id"}]}}},
        "responses": {200: {"description": "what was accepted, why the others were not", **_json("BatchAnswer")},
                      **_errors(400, 403, 404, 408, 413, 415, 503)},
    }})


def _ops_paths(spec: APISpec) -> None:
    status = {"type": "object", "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
              "required": ["status"]}
    unready = {"status": "unready", "reason": "no answer from Kafka for 12 s; Kafka does not answer: "
                                              "NoBrokersAvailable()"}
    ops = {"/healthz": {"summary": "Alive", "responses": {200: {"description": "serving",
                                                               **_json(status, {"status": "ok"})}}},
           "/readyz": {"summary": "Ready: Kafka answered lately", "responses": {
               200: {"description": "ready", **_json(status, {"status": "ready"})},
               503: {"description": "not ready, and why", **_json(status, unready)}}},
           "/metrics": {"summary": "Prometheus metrics", "responses": {200: {"description": "text format", "content": {
               "text/plain": {"schema": {"type": "string"}, "example": 'collector_events_total{outcome="accepted"} '
                                                                       "3.0\n"}}}}},
           "/openapi.json": {"summary": "This document", "responses": {200: {"description": "OpenAPI 3", **_json(
               {"type": "object"}, {"openapi": "3.1.0", "info": {"title": "collector", "version": "1"}})}}}}
    for path, operation in ops.items():
        spec.path(path, operations={"get": {"tags": ["operations"], **operation}})


def init_app(app: Flask) -> None:
    """Serve the document at ``/openapi.json``."""
    app.register_blueprint(bp)


def get_document(app: Flask | None = None) -> dict[str, Any]:
    """The document of ``app`` (default: the current app), built on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    document: dict[str, Any] | None = app.extensions.get(EXTENSION)
    if document is None:  # two threads may both build it: the same document, one assignment wins
        document = app.extensions[EXTENSION] = build(get_settings(app))
    return document


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 document of this API."""
    return jsonify(get_document())
