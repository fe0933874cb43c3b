"""The JSON error handlers: one shape, ``{"code", "message", "errors"?}``, for every error."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound

log = logging.getLogger(__name__)


class APIError(HTTPException):
    """An error answered to the caller: status, message, and the fields at fault."""

    def __init__(
        self,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.errors = errors
        self.extra_headers = headers or {}


def error_response(exc: HTTPException) -> Response:
    """Answer any HTTP error as JSON, keeping its headers (``Allow`` on a 405, say)."""
    message = exc.description
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        message = f"{request.method} is not allowed here; allowed: {', '.join(exc.valid_methods)}"
    elif isinstance(exc, NotFound) and request.url_rule is None:  # no route, rather than a route's own 404
        message = no_route(request.path)
    body: dict[str, Any] = {"code": exc.code, "message": message}
    errors = getattr(exc, "errors", None)
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = exc.code or 500
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    response.headers.update(getattr(exc, "extra_headers", {}))
    return response


def no_route(path: str) -> str:
    """A 404's message where no route matches ``path``: where events go, and where the API is described."""
    reference = "/docs" if "docs.page" in current_app.view_functions else "/openapi.json"
    stripped = path.rstrip("/")
    if stripped != path and stripped and routed(stripped):
        return f"no such route: {path} (without the trailing slash: {stripped}); the API reference: {reference}"
    return (f"no such route: {path}; events go to POST /collect/{{aid}}/{{tid}}/event (a batch: .../events); "
            f"the API reference: {reference}")


def routed(path: str) -> bool:
    """Whether a route serves ``path``, with any method."""
    try:
        current_app.url_map.bind("collector").match(path)
    except MethodNotAllowed:
        return True
    except HTTPException:
        return False
    return True


def unexpected(exc: Exception) -> Response:
    """A bug: log it with its traceback, answer a plain 500."""
    log.exception("unhandled error")
    return error_response(InternalServerError("internal error"))


def init_app(app: Flask) -> None:
    """Register the JSON error handlers on ``app``."""
    app.register_error_handler(HTTPException, error_response)
    app.register_error_handler(Exception, unexpected)
