"""The operators' routes: liveness, readiness, metrics."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request

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


def count_answer(response: Response) -> Response:
    """Count every answer by route (the URL rule, never the path) and status."""
    rule = request.url_rule
    count_request(rule.rule if rule else "unmatched", response.status_code)
    return response


def init_app(app: Flask) -> None:
    """The operators' routes, and the request counter on every answer."""
    app.register_blueprint(bp)
    app.after_request(count_answer)
