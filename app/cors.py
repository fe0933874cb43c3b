"""CORS on the collect routes, so that pages can send events and read the errors.

Written out rather than flask-cors: in the benchmark's profile flask-cors took 5.5 % of a
worker's CPU (it parses its options and raises a KeyError inside Werkzeug for every request
without an Origin), more than the rest of this module's answer costs.
"""
from __future__ import annotations

from flask import Flask, Response, request

PREFIX = "/collect/"


def register_cors(app: Flask) -> None:
    """Add the CORS headers to every answer on the collect routes, errors included."""
    origins = app.config["COLLECTOR_CORS_ORIGINS"]  # "*" or a list of origins
    max_age = str(app.config["COLLECTOR_CORS_MAX_AGE"])

    def add_cors_headers(response: Response) -> Response:
        origin = request.environ.get("HTTP_ORIGIN")
        if origin is None or not request.path.startswith(PREFIX):
            return response
        if origins != "*":
            response.vary.add("Origin")
            if origin not in origins:
                return response  # no permission: the page cannot read the answer
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = "*" if origins == "*" else origin
        if request.method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.environ:
            headers["Access-Control-Allow-Methods"] = "POST"
            headers["Access-Control-Allow-Headers"] = "Content-Type, Content-Encoding"
            headers["Access-Control-Max-Age"] = max_age
        return response

    app.after_request(add_cors_headers)
