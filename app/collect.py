"""The collect routes: read the body, curate it into events, queue them, answer."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from flask import Blueprint, Flask, Request, Response, current_app, jsonify, request
from marshmallow import ValidationError

from .body import json_type, read_body
from .config import get_settings
from .cors import refused
from .delivery import Pipeline, Unavailable, get_pipeline
from .errors import APIError
from .event import Limits, make_event, new_event_id
from .ids import ID_MESSAGE, canonical_id
from .registry import Registry, get_registry
from .rejects import Refusal, Rejects, get_rejects
from .vendors import Vendors, unregistered

bp = Blueprint("collect", __name__)
EXTENSION = "collector.collect"


class NoContent(Response):
    """The empty answer of a tracked event: no body, so no Content-Type either."""

    default_mimetype = None
    default_status = 204


def _summary(errors: dict[str, Any]) -> str:
    return "; ".join(f"{field} {why[0] if isinstance(why, list) else why}" for field, why in errors.items())


class View(NamedTuple):
    """What the collect routes use of the app, gathered on the first request (one lookup after)."""

    origins: str | tuple[str, ...]  # "*" or the allowed origins
    max_body: int
    body_timeout_ms: int
    max_batch: int
    limits: Limits
    registry: Registry | None
    pipeline: Pipeline
    rejects: Rejects


def init_app(app: Flask) -> None:
    """Register the collect routes on ``app``."""
    app.register_blueprint(bp)


def get_view() -> View:
    """The current app's ``View``."""
    view: View | None = current_app.extensions.get(EXTENSION)
    if view is None:  # two threads may both build it: the same values, and one assignment wins
        s = get_settings()
        view = current_app.extensions[EXTENSION] = View(
            s.cors_origins, s.max_body_bytes, s.body_timeout_ms, s.max_batch, Limits.of(s), get_registry(),
            get_pipeline(), get_rejects())
    return view


class Call(NamedTuple):
    """A collect request that passed ``begin``."""

    request: Request
    view: View
    account: str  # canonical ids
    tracker: str
    vendors: Vendors | None  # the registry's vendors, None when every vendor is accepted


def begin(aid: str, tid: str) -> Call:
    """Refuse a browser's request from an origin that is not allowed (403): CORS alone would
    only stop the page from reading the answer, and a beacon (``text/plain``) needs no
    preflight. Then 404 for an id that is malformed or not registered."""
    # The proxies are resolved once: each lookup through them cost about a microsecond.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    view = get_view()
    origin = req.environ.get("HTTP_ORIGIN")
    if refused(origin, view.origins):
        raise APIError(403, f"origin {origin} may not send events here")
    account, tracker = canonical_id(aid), canonical_id(tid)
    if account is None or tracker is None:
        malformed = {k: [ID_MESSAGE] for k, v in (("aid", account), ("tid", tracker)) if v is None}
        raise APIError(404, f"no such collect path: {_summary(malformed)}", malformed)
    vendors = None
    if view.registry is not None:
        if unknown := view.registry.unknown(account, tracker):
            [[why]] = unknown.values()
            raise APIError(404, f"no such collect path: {why}", unknown)
        # Read once per request, with the ids: every event of a batch meets the same registry.
        vendors = view.registry.known.vendors or None
    return Call(req, view, account, tracker, vendors)


def curate(call: Call, event_id: str, body: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """One event of the call, or ``ValidationError``: a body over a limit, not what the schema
    allows, or from a vendor or product the registry does not list."""
    event = make_event(event_id, call.account, call.tracker, body, context, call.view.limits)
    if call.vendors is not None and (unknown := unregistered(call.vendors, event["vendor"], event["product"])):
        raise ValidationError(unknown)
    return event


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
    """An event as validate-only shows it: the Kafka record it would have been, its value byte for byte."""
    record = pipeline.record(event)
    return {"topic": record.topic, "key": record.key.decode(), "value": orjson.Fragment(record.value)}


def records_answer(answer: dict[str, Any]) -> Response:
    """A validate-only answer, its records as they would be queued (jsonify would sort their keys)."""
    return Response(orjson.dumps(answer) + b"\n", mimetype="application/json")


def queue(pipeline: Pipeline, events: list[dict[str, Any]]) -> None:
    """Append events to the log, all or none: a 503 when they cannot be kept."""
    try:
        pipeline.put(events)
    except Unavailable as exc:
        what = "the event was not" if len(events) == 1 else f"none of the {len(events)} events was"
        raise APIError(503, f"{what} tracked: {exc}", headers={"Retry-After": "1"}) from None


def refusing(view: Callable[[str, str], Response]) -> Callable[[str, str], Response]:
    """A collect route whose refusals (4xx) also go to the rejects stream."""
    @functools.wraps(view)
    def route(aid: str, tid: str) -> Response:
        try:
            return view(aid, tid)
        except APIError as exc:
            if exc.code is not None and 400 <= exc.code < 500:
                get_view().rejects.refused(request, bucket(aid), aid, tid, exc.code,
                                           [Refusal(exc.description or "", exc.errors)])
            raise

    return route


def bucket(aid: str) -> str:
    """Whose rate limit a reject counts against: the account's, by its one spelling; every id the
    collector does not take (malformed, or not in the registry) shares one, so a caller cannot
    get round the limit by changing the id."""
    account, registry = canonical_id(aid), get_view().registry
    if account is None or registry is not None and account not in registry.known.accounts:
        return ""
    return account


@bp.post("/collect/<aid>/<tid>/event")
@refusing
def track(aid: str, tid: str) -> Response:
    """Track one event: ``204`` once it is queued, a JSON error saying what is wrong otherwise."""
    event_id = new_event_id()
    call = begin(aid, tid)
    check = validate_only(call.request)
    body = read_body(call.request, call.view.max_body, call.view.body_timeout_ms)
    if not isinstance(body, dict):
        raise APIError(400, f"the body must be a JSON object, not {json_type(body)}")
    try:
        event = curate(call, event_id, body, request_context(call.request.environ))
    except ValidationError as exc:
        errors = exc.normalized_messages()
        raise APIError(400, f"the event was not tracked: {_summary(errors)}", errors) from None
    if check:
        return records_answer(shown(call.view.pipeline, event))
    queue(call.view.pipeline, [event])
    return NoContent()


@bp.post("/collect/<aid>/<tid>/events")
@refusing
def track_batch(aid: str, tid: str) -> Response:
    """Track a JSON array of events, each on its own: ``200`` with how many were accepted and
    why each other one was rejected; none is queued if the collector cannot keep them all."""
    call = begin(aid, tid)
    check = validate_only(call.request)
    body = read_body(call.request, call.view.max_body, call.view.body_timeout_ms)
    limit = call.view.max_batch
    if not isinstance(body, list):
        raise APIError(400, f"the body must be a JSON array of events, not {json_type(body)}")
    if not body:
        raise APIError(400, "the batch is empty: send at least one event")
    if len(body) > limit:
        raise APIError(400, f"the batch holds {len(body)} events, more than the {limit} allowed")
    context = request_context(call.request.environ)
    events, rejected = [], []
    for index, item in enumerate(body):
        try:
            if not isinstance(item, dict):
                raise ValidationError(f"must be a JSON object, not {json_type(item)}")
            events.append(curate(call, new_event_id(), item, context))
        except ValidationError as exc:
            rejected.append({"index": index, "errors": exc.normalized_messages()})
    answer: dict[str, Any] = {"accepted": len(events), "rejected": rejected}
    if check:
        return records_answer({**answer, "events": [shown(call.view.pipeline, e) for e in events]})
    if events:
        queue(call.view.pipeline, events)
    if rejected:
        call.view.rejects.refused(call.request, call.account, aid, tid, 400, [
            Refusal(f"the event was not tracked: {_summary(r['errors'])}", r["errors"], r["index"], body[r["index"]])
            for r in rejected])
    return jsonify(answer)
