"""The operators' routes: liveness, readiness, metrics."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import MethodNotAllowed

from .delivery import get_pipeline
from .metrics import count_request, exposition

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """``200`` while the process serves."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """``200`` when Kafka answered this worker lately and its threads run, else ``503`` with the reason."""
    problem = get_pipeline().unready()
    response = jsonify(status="unready", reason=problem) if problem else jsonify(status="ready")
    response.status_code = 503 if problem else 200
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics of all workers (keep it off the public side of the proxy)."""
    body, content_type = exposition()
    return Response(body, content_type=content_type)


def route() -> str:
    """The URL rule of this request: its route's even when the method is wrong (405), else "unmatched"."""
    if request.url_rule is not None:
        return request.url_rule.rule
    refused = request.routing_exception
    if isinstance(refused, MethodNotAllowed) and refused.valid_methods:  # a real route, another method
        adapter = current_app.url_map.bind_to_environ(request.environ)
        rule, _ = adapter.match(method=next(iter(refused.valid_methods)), return_rule=True)
        return rule.rule
    return "unmatched"


def count_answer(response: Response) -> Response:
    """Count every answer by route (the URL rule, never the path) and status."""
    count_request(route(), response.status_code)
    return response


def init_app(app: Flask) -> None:
    """The operators' routes, and the request counter on every answer."""
    app.register_blueprint(bp)
    app.after_request(count_answer)
