"""The OpenAPI 3 document of the HTTP API, built from the marshmallow schemas (apispec)."""
from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify

from . import docs
from .config import Settings, get_settings
from .ids import ID_PATTERN
from .schemas import BatchAnswerSchema, ErrorSchema, EventSchema, Number, RecordSchema

bp = Blueprint("openapi", __name__)
EXTENSION = "collector.openapi"
ERRORS = {
    400: "the body or a field is wrong, a vendor or product the registry does not list included",
    403: "an origin not allowed", 404: "no such account, tracker or route",
    405: "another method", 408: "the body stopped arriving", 413: "the body is too large",
    415: "another Content-Type, charset or Content-Encoding", 503: "the collector cannot keep the event now",
}
#: The event that Try it out on /docs sends as it stands (to account 1, tracker 1). Its vendor and
#: product are placeholders: where the registry lists vendors, it is refused (400) until edited.
EXAMPLE = {"action": "View", "object": "page", "vendor": "Example Vendor", "product": "Example Product",
           "instance_id": "docs-example-1"}


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[int, Any]:
    return {code: {"description": ERRORS[code], **_json("Error")} for code in codes}


def build(settings: Settings) -> dict[str, Any]:
    """The document, from the schemas and the settings."""
    plugin = MarshmallowPlugin()
    spec = APISpec("collector", "1", "3.1.0", plugins=[plugin],
                   info={"description": "Tracks events: POST them, they are queued on the account's Kafka topic."})
    plugin.map_to_openapi_type(Number, "number", None)
    for name, schema in (("Error", ErrorSchema), ("Record", RecordSchema), ("BatchAnswer", BatchAnswerSchema)):
        spec.components.schema(name, schema=schema)
    spec.components.schema("Event", schema=EventSchema)
    event = _event(spec.to_dict()["components"]["schemas"]["Event"], settings)
    _collect_paths(spec, settings.max_batch)
    _ops_paths(spec)
    if settings.docs:
        docs.describe(spec)
    document = spec.to_dict()
    document["components"]["schemas"]["Event"] = event
    document["components"]["schemas"].update(_values(settings))
    return document


def _event(event: dict[str, Any], s: Settings) -> dict[str, Any]:
    """The Event schema as apispec made it, with what marshmallow cannot say: instance_id or
    instanceID, and every other field kept within the limits."""
    event["required"] = [f for f in event["required"] if f != "instance_id"]
    event["oneOf"] = [{"required": ["instance_id"]}, {"required": ["instanceID"]}]
    event["properties"]["instanceID"] = event["properties"]["instance_id"]
    event["propertyNames"] = {"maxLength": s.max_key}
    event["maxProperties"] = s.max_fields
    event["additionalProperties"] = {"$ref": "#/components/schemas/Value2"}
    for field in event["properties"].values():
        if field["type"] == "string":
            field["maxLength"] = s.max_string
    return event


def _values(s: Settings) -> dict[str, Any]:
    """One schema per level of nesting, so that the document says how deep a value may go (the
    event itself is level 1)."""
    values = {}
    for level in range(2, s.max_depth + 2):
        scalars: list[dict[str, Any]] = [{"type": ["number", "boolean", "null"]},
                                         {"type": "string", "maxLength": s.max_string}]
        inner = {"$ref": f"#/components/schemas/Value{level + 1}"}
        containers = [{"type": "array", "maxItems": s.max_fields, "items": inner},
                      {"type": "object", "maxProperties": s.max_fields, "propertyNames": {"maxLength": s.max_key},
                       "additionalProperties": inner}]
        values[f"Value{level}"] = {"anyOf": scalars + (containers if level <= s.max_depth else []),
                                   "description": f"a JSON value at nesting level {level}"}
    return values


def _collect_paths(spec: APISpec, limit: int) -> None:
    ids = [{"name": n, "in": "path", "required": True, "description": d,
            "schema": {"type": "string", "pattern": f"^(?:{ID_PATTERN})$"}, "example": "1"}
           for n, d in (("aid", "the account: a positive number or a UUID"), ("tid", "the tracker"))]
    validate = {"name": "validate", "in": "query", "required": False,
                "description": "true: queue nothing, answer with the record(s) as they would be queued",
                "schema": {"type": "string", "enum": ["true", "false"]}}
    spec.path("/collect/{aid}/{tid}/event", parameters=ids, operations={"post": {
        "summary": "Track one event", "parameters": [validate],
        "requestBody": {"required": True, "content": {"application/json": {"schema": "Event", "example": EXAMPLE}}},
        "responses": {204: {"description": "queued"}, 200: {"description": "validate-only", **_json("Record")},
                      **_errors(400, 403, 404, 408, 413, 415, 503)},
    }})
    spec.path("/collect/{aid}/{tid}/events", parameters=ids, operations={"post": {
        "summary": "Track a batch of events, each on its own", "parameters": [validate],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "array", "minItems": 1, "maxItems": limit,
            "description": "each item is checked against Event on its own: a bad one is rejected alone",
            "items": {}}, "example": [EXAMPLE]}}},
        "responses": {200: {"description": "what was accepted, why the others were not", **_json("BatchAnswer")},
                      **_errors(400, 403, 404, 408, 413, 415, 503)},
    }})


def _ops_paths(spec: APISpec) -> None:
    status = {"type": "object", "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
              "required": ["status"]}
    spec.path("/healthz", operations={"get": {"summary": "Alive", "responses": {
        200: {"description": "serving", "content": {"application/json": {"schema": status}}}}}})
    spec.path("/readyz", operations={"get": {"summary": "Ready: Kafka answered lately", "responses": {
        200: {"description": "ready", "content": {"application/json": {"schema": status}}},
        503: {"description": "not ready, and why", "content": {"application/json": {"schema": status}}}}}})
    spec.path("/metrics", operations={"get": {"summary": "Prometheus metrics", "responses": {
        200: {"description": "text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}})
    spec.path("/openapi.json", operations={"get": {"summary": "This document", "responses": {
        200: {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}}}}})


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
