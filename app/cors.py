"""CORS on the collect routes, so that pages can send events and read the errors.

Written out rather than flask-cors: in the benchmark's profile flask-cors took 5.5 % of a
worker's CPU (it parses its options and raises a KeyError inside Werkzeug for every request
without an Origin), more than the rest of this module's answer costs.
"""
from __future__ import annotations

from flask import Flask, Response, request

from .config import get_settings

PREFIX = "/collect/"


def refused(origin: str | None, origins: str | tuple[str, ...]) -> bool:
    """Whether a request from ``origin`` (None: not from a browser) is refused by ``origins``."""
    return origin is not None and origins != "*" and origin not in origins


def init_app(app: Flask) -> None:
    """Add the CORS headers to every answer on the collect routes, errors included."""
    settings = get_settings(app)
    origins = settings.cors_origins  # "*" or a tuple of origins
    max_age = str(settings.cors_max_age)

    def add_cors_headers(response: Response) -> Response:
        if request.method == "OPTIONS" and response.status_code == 200 and not response.get_data():
            # Flask's own answer to OPTIONS is an empty text/html page: an empty 204 says it all.
            response.status_code = 204
            del response.headers["Content-Type"]
        origin = request.environ.get("HTTP_ORIGIN")
        if origin is None or not request.path.startswith(PREFIX):
            return response
        if origins != "*":
            response.vary.add("Origin")
            if refused(origin, origins):
                return response  # no permission: the page cannot read the answer
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = "*" if origins == "*" else origin
        if request.method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.environ:
            headers["Access-Control-Allow-Methods"] = "POST"
            headers["Access-Control-Allow-Headers"] = "Content-Type, Content-Encoding"
            headers["Access-Control-Max-Age"] = max_age
        return response

    app.after_request(add_cors_headers)
