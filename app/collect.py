"""The collect route: read the body, curate it into an event, queue it, answer 204."""
from __future__ import annotations

import zlib
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError

from .errors import APIError
from .metrics import ACCEPTED
from .producer import Unavailable, producer
from .registry import REGISTRY, Registry
from .schemas import ID_MESSAGE, Limits, canonical_id, make_event, new_event_id

bp = Blueprint("collect", __name__)


class NoContent(Response):
    """The empty answer of a tracked event: no body, so no Content-Type either."""

    default_mimetype = None
    default_status = 204


FORM = "application/x-www-form-urlencoded"


def _summary(errors: dict[str, Any]) -> str:
    return "; ".join(f"{field} {why[0] if isinstance(why, list) else why}" for field, why in errors.items())


@bp.before_request
def refuse_other_origins() -> None:
    """With origins restricted, a browser's request from another origin is refused, not tracked.

    CORS alone would only stop the page from reading the answer: a beacon (``text/plain``)
    needs no preflight, so the collector must refuse it itself.
    """
    allowed = current_app.config["COLLECTOR_CORS_ORIGINS"]
    origin = request.environ.get("HTTP_ORIGIN")
    if origin is not None and allowed != "*" and origin not in allowed:
        raise APIError(403, f"origin {origin} may not send events here")


def read_ids(aid: str, tid: str) -> tuple[str, str]:
    """The account and tracker ids of the path, canonical; a 404 when malformed or not registered."""
    account, tracker = canonical_id(aid), canonical_id(tid)
    if account is None or tracker is None:
        malformed = {k: [ID_MESSAGE] for k, v in (("aid", account), ("tid", tracker)) if v is None}
        raise APIError(404, f"no such collect path: {_summary(malformed)}", malformed)
    registry: Registry | None = current_app.extensions.get(REGISTRY)
    if registry is not None and (unknown := registry.unknown(account, tracker)):
        [[why]] = unknown.values()
        raise APIError(404, f"no such collect path: {why}", unknown)
    return account, tracker


def read_body() -> Any:
    """The request body as JSON; a 4xx that says what is wrong otherwise."""
    mimetype = request.mimetype
    if mimetype not in ("", "application/json", "text/plain") and not mimetype.endswith("+json"):
        hint = " (curl -d sends that: add -H 'Content-Type: application/json')" if mimetype == FORM else ""
        raise APIError(415, f"Content-Type must be application/json or text/plain, not {mimetype}{hint}")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise APIError(415, f"the body must be UTF-8, not {charset}")
    environ = request.environ
    encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise APIError(415, f"Content-Encoding must be gzip, deflate or identity, not {encoding}")
    limit: int = current_app.config["COLLECTOR_MAX_BODY_BYTES"]
    data = read_raw_body(environ, limit)
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


def read_raw_body(environ: dict[str, Any], limit: int) -> bytes:
    """The body's bytes, read straight from the WSGI input (Werkzeug's wrapping of it cost more
    than the rest of the view); a 413 past ``limit``, a 408 when it stops arriving."""
    length = request.content_length
    if length is not None and length > limit:
        raise APIError(413, f"the body is larger than the limit of {limit} bytes")
    if length is None and not environ.get("wsgi.input_terminated"):
        return b""  # no length, and a server that cannot tell where the body ends
    timeout = current_app.config["COLLECTOR_BODY_TIMEOUT_MS"]
    sock = environ.get("gunicorn.socket")
    if sock is not None:  # a client that stops sending mid-body frees the worker after this
        sock.settimeout(timeout / 1000)
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


def limits() -> Limits:
    """The configured bounds of an event."""
    return current_app.config["COLLECTOR_LIMITS"]  # type: ignore[no-any-return]


def request_context() -> dict[str, Any]:
    """What the request itself tells about the caller."""
    environ = request.environ
    context = {"ip": request.remote_addr, "user_agent": environ.get("HTTP_USER_AGENT")}
    if referer := environ.get("HTTP_REFERER"):
        context["referer"] = referer
    return context


def validate_only() -> bool:
    """``?validate=true``: curate and show, queue nothing."""
    if not request.query_string:  # the common case, without building request.args
        return False
    value = request.args.get("validate", "false")
    if value not in ("true", "false"):
        raise APIError(400, f"validate must be true or false, not {value}")
    return value == "true"


def shown(event: dict[str, Any]) -> dict[str, Any]:
    """An event as validate-only shows it: the Kafka record it would have been."""
    record = producer.outbox().record(event)
    return {"topic": record.topic, "key": record.key.decode(), "value": event}


def queue(events: list[dict[str, Any]]) -> None:
    """Hand events to the producer, all or none: a 503 when they cannot be kept."""
    try:
        producer.send(events)
    except Unavailable as exc:
        what = "the event was not" if len(events) == 1 else f"none of the {len(events)} events was"
        raise APIError(503, f"{what} tracked: {exc}", headers={"Retry-After": "1"}) from None
    ACCEPTED.inc(len(events))


@bp.post("/collect/<aid>/<tid>/event")
def track(aid: str, tid: str) -> Response:
    """Track one event: ``204`` once it is queued, a JSON error saying what is wrong otherwise."""
    event_id = new_event_id()
    account, tracker = read_ids(aid, tid)
    check = validate_only()
    body = read_body()
    if not isinstance(body, dict):
        raise APIError(400, f"the body must be a JSON object, not {type(body).__name__}")
    try:
        event = make_event(event_id, account, tracker, body, request_context(), limits())
    except ValidationError as exc:
        errors = exc.normalized_messages()
        raise APIError(400, f"the event was not tracked: {_summary(errors)}", errors) from None
    if check:
        return jsonify(shown(event))
    queue([event])
    return NoContent()


@bp.post("/collect/<aid>/<tid>/events")
def track_batch(aid: str, tid: str) -> Response:
    """Track a JSON array of events, each on its own: ``200`` with how many were accepted and
    why each other one was rejected; none is queued if the collector cannot keep them all."""
    account, tracker = read_ids(aid, tid)
    check = validate_only()
    body = read_body()
    limit = current_app.config["COLLECTOR_MAX_BATCH"]
    if not isinstance(body, list):
        raise APIError(400, f"the body must be a JSON array of events, not {type(body).__name__}")
    if not body:
        raise APIError(400, "the batch is empty: send at least one event")
    if len(body) > limit:
        raise APIError(400, f"the batch holds {len(body)} events; at most {limit} are allowed")
    context, event_limits = request_context(), limits()
    events, rejected = [], []
    for index, item in enumerate(body):
        try:
            if not isinstance(item, dict):
                raise ValidationError(f"must be a JSON object, not {type(item).__name__}")
            events.append(make_event(new_event_id(), account, tracker, item, context, event_limits))
        except ValidationError as exc:
            rejected.append({"index": index, "errors": exc.normalized_messages()})
    answer: dict[str, Any] = {"accepted": len(events), "rejected": rejected}
    if check:
        answer["events"] = [shown(e) for e in events]
    elif events:
        queue(events)
    return jsonify(answer)
