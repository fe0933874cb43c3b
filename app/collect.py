"""The collect route: read the body, curate it into an event, queue it, answer 204."""
from __future__ import annotations

import socket
import struct
import zlib
from typing import Any, NamedTuple

import orjson
from flask import Blueprint, Flask, Request, Response, current_app, jsonify, request
from marshmallow import ValidationError

from .delivery import Pipeline, Unavailable, delivery
from .errors import APIError
from .registry import REGISTRY, Registry, Vendors, unregistered
from .schemas import ID_MESSAGE, Limits, canonical_id, make_event, new_event_id

bp = Blueprint("collect", __name__)
SETTINGS = "collector.collect"


class NoContent(Response):
    """The empty answer of a tracked event: no body, so no Content-Type either."""

    default_mimetype = None
    default_status = 204


FORM = "application/x-www-form-urlencoded"


def _summary(errors: dict[str, Any]) -> str:
    return "; ".join(f"{field} {why[0] if isinstance(why, list) else why}" for field, why in errors.items())


class Settings(NamedTuple):
    """What the collect routes read of the app's config, looked up once per request."""

    origins: Any  # "*" or the allowed origins
    max_body: int
    body_timeout_ms: int
    max_batch: int
    limits: Limits
    registry: Registry | None
    pipeline: Pipeline


def init_app(app: Flask) -> None:
    """Register the collect routes on ``app`` (after its registry and delivery)."""
    c = app.config
    app.extensions[SETTINGS] = Settings(
        c["COLLECTOR_CORS_ORIGINS"], c["COLLECTOR_MAX_BODY_BYTES"], c["COLLECTOR_BODY_TIMEOUT_MS"],
        c["COLLECTOR_MAX_BATCH"], c["COLLECTOR_LIMITS"], app.extensions.get(REGISTRY), delivery.pipeline(app),
    )
    app.register_blueprint(bp)


def begin(aid: str, tid: str) -> tuple[Request, Settings, str, str, Vendors | None]:
    """The request, the settings, the account and tracker ids of the path, canonical, and the
    registry's vendors when it lists any (None: every vendor is accepted).

    Refuses a browser's request from an origin that is not allowed (403): CORS alone would
    only stop the page from reading the answer, and a beacon (``text/plain``) needs no
    preflight. Then 404 for an id that is malformed or not registered.
    """
    # The proxies are resolved once: each lookup through them cost about a microsecond.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    settings: Settings = current_app.extensions[SETTINGS]
    origin = req.environ.get("HTTP_ORIGIN")
    if origin is not None and settings.origins != "*" and origin not in settings.origins:
        raise APIError(403, f"origin {origin} may not send events here")
    account, tracker = canonical_id(aid), canonical_id(tid)
    if account is None or tracker is None:
        malformed = {k: [ID_MESSAGE] for k, v in (("aid", account), ("tid", tracker)) if v is None}
        raise APIError(404, f"no such collect path: {_summary(malformed)}", malformed)
    vendors = None
    if settings.registry is not None:
        if unknown := settings.registry.unknown(account, tracker):
            [[why]] = unknown.values()
            raise APIError(404, f"no such collect path: {why}", unknown)
        # Read once per request, with the ids: every event of a batch meets the same registry.
        vendors = settings.registry.known.vendors or None
    return req, settings, account, tracker, vendors


#: Content-Type values taken without parsing them (what curl, fetch and sendBeacon send).
PLAIN_TYPES = frozenset({"", "application/json", "text/plain", "text/plain;charset=UTF-8",
                         "application/json; charset=utf-8", "application/json;charset=UTF-8"})


def read_body(req: Request, settings: Settings) -> Any:
    """The request body as JSON; a 4xx that says what is wrong otherwise."""
    environ = req.environ
    if environ.get("CONTENT_TYPE", "") not in PLAIN_TYPES:
        mimetype = req.mimetype
        if mimetype not in ("", "application/json", "text/plain") and not mimetype.endswith("+json"):
            hint = " (curl -d sends that: add -H 'Content-Type: application/json')" if mimetype == FORM else ""
            raise APIError(415, f"Content-Type must be application/json or text/plain, not {mimetype}{hint}")
        charset = req.mimetype_params.get("charset", "utf-8").lower()
        if charset not in ("utf-8", "utf8"):
            raise APIError(415, f"the body must be UTF-8, not {charset}")
    encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise APIError(415, f"Content-Encoding must be gzip, deflate or identity, not {encoding}")
    limit = settings.max_body
    data = read_raw_body(req, limit, settings.body_timeout_ms)
    if encoding != "identity":
        data = inflate(data, encoding, limit)
    if not data:
        raise APIError(400, "the body is empty: send the event as a JSON object")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode()
        except UnicodeDecodeError as bad:
            raise APIError(400, f"the body is not valid UTF-8 (byte {bad.start})") from None
        raise APIError(400, f"the body is not valid JSON: {exc}") from None
    return body


def read_raw_body(req: Request, limit: int, timeout: int) -> bytes:
    """The body's bytes, read straight from the WSGI input (Werkzeug's wrapping of it cost more
    than the rest of the view); a 413 past ``limit``, a 408 when it stops arriving within
    ``timeout`` ms."""
    environ = req.environ
    length = req.content_length
    if length is not None and length > limit:
        raise APIError(413, f"the body is larger than the limit of {limit} bytes")
    if length is None and not environ.get("wsgi.input_terminated"):
        return b""  # no length, and a server that cannot tell where the body ends
    sock = environ.get("gunicorn.socket")
    if sock is not None:  # a client that stops sending mid-body frees the worker after this
        # The kernel's receive timeout rather than settimeout's, which turns the socket
        # non-blocking and makes every later send of the answer poll first.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", *divmod(timeout * 1000, 1_000_000)))
    try:
        data: bytes = environ["wsgi.input"].read(limit + 1 if length is None else length)
    except OSError:
        raise APIError(408, f"the body ended early or did not arrive within {timeout} ms") from None
    if len(data) > limit:
        raise APIError(413, f"the body is larger than the limit of {limit} bytes")
    if length is not None and len(data) < length:
        raise APIError(408, f"the body ended early or did not arrive within {timeout} ms")
    return data


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a gzip or deflate body, never to more than ``limit`` bytes (a 413 past it)."""
    # HTTP's "deflate" is zlib-wrapped (RFC 9110), but some clients send it raw: try both.
    for wbits in (16 + zlib.MAX_WBITS,) if encoding == "gzip" else (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            error = str(exc)
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise APIError(413, f"the body inflates to more than the limit of {limit} bytes")
        if not inflater.eof or inflater.unused_data:
            raise APIError(400, f"the {encoding} body is truncated or has trailing data")
        return out
    raise APIError(400, f"the body is not valid {encoding}: {error}")


def request_context(environ: dict[str, Any]) -> dict[str, Any]:
    """What the request itself tells about the caller."""
    context = {"ip": environ.get("REMOTE_ADDR"), "user_agent": environ.get("HTTP_USER_AGENT")}
    if referer := environ.get("HTTP_REFERER"):
        context["referer"] = referer
    return context


def validate_only(req: Request) -> bool:
    """``?validate=true``: curate and show, queue nothing."""
    if not req.environ.get("QUERY_STRING"):  # the common case, without building request.args
        return False
    value = req.args.get("validate", "false")
    if value not in ("true", "false"):
        raise APIError(400, f"validate must be true or false, not {value}")
    return value == "true"


def shown(pipeline: Pipeline, event: dict[str, Any]) -> dict[str, Any]:
    """An event as validate-only shows it: the Kafka record it would have been."""
    record = pipeline.record(event)
    return {"topic": record.topic, "key": record.key.decode(), "value": event}


def queue(pipeline: Pipeline, events: list[dict[str, Any]]) -> None:
    """Append events to the log, all or none: a 503 when they cannot be kept."""
    try:
        pipeline.put(events)
    except Unavailable as exc:
        what = "the event was not" if len(events) == 1 else f"none of the {len(events)} events was"
        raise APIError(503, f"{what} tracked: {exc}", headers={"Retry-After": "1"}) from None


@bp.post("/collect/<aid>/<tid>/event")
def track(aid: str, tid: str) -> Response:
    """Track one event: ``204`` once it is queued, a JSON error saying what is wrong otherwise."""
    event_id = new_event_id()
    req, settings, account, tracker, vendors = begin(aid, tid)
    check = validate_only(req)
    body = read_body(req, settings)
    if not isinstance(body, dict):
        raise APIError(400, f"the body must be a JSON object, not {type(body).__name__}")
    try:
        event = make_event(event_id, account, tracker, body, request_context(req.environ), settings.limits)
        if vendors is not None and (unknown := unregistered(vendors, event["vendor"], event["product"])):
            raise ValidationError(unknown)
    except ValidationError as exc:
        errors = exc.normalized_messages()
        raise APIError(400, f"the event was not tracked: {_summary(errors)}", errors) from None
    if check:
        return jsonify(shown(settings.pipeline, event))
    queue(settings.pipeline, [event])
    return NoContent()


@bp.post("/collect/<aid>/<tid>/events")
def track_batch(aid: str, tid: str) -> Response:
    """Track a JSON array of events, each on its own: ``200`` with how many were accepted and
    why each other one was rejected; none is queued if the collector cannot keep them all."""
    req, settings, account, tracker, vendors = begin(aid, tid)
    check = validate_only(req)
    body = read_body(req, settings)
    limit = settings.max_batch
    if not isinstance(body, list):
        raise APIError(400, f"the body must be a JSON array of events, not {type(body).__name__}")
    if not body:
        raise APIError(400, "the batch is empty: send at least one event")
    if len(body) > limit:
        raise APIError(400, f"the batch holds {len(body)} events; at most {limit} are allowed")
    context = request_context(req.environ)
    events, rejected = [], []
    for index, item in enumerate(body):
        try:
            if not isinstance(item, dict):
                raise ValidationError(f"must be a JSON object, not {type(item).__name__}")
            event = make_event(new_event_id(), account, tracker, item, context, settings.limits)
            if vendors is not None and (unknown := unregistered(vendors, event["vendor"], event["product"])):
                raise ValidationError(unknown)
            events.append(event)
        except ValidationError as exc:
            rejected.append({"index": index, "errors": exc.normalized_messages()})
    answer: dict[str, Any] = {"accepted": len(events), "rejected": rejected}
    if check:
        answer["events"] = [shown(settings.pipeline, e) for e in events]
    elif events:
        queue(settings.pipeline, events)
    return jsonify(answer)
