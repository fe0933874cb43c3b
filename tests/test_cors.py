"""CORS on the collect routes (app/cors.py): preflights, headers on every answer, errors
included, and origins that are not allowed."""
from __future__ import annotations

import json

import pytest

from app.cors import refused
from tests.helpers import EVENT, sent_by

BODY = json.dumps(EVENT).encode()
PAGE = "http://shop.example"


def test_preflight_allows_posting_json_from_any_origin(client, sent):
    response = client.options("/collect/1/1/event", headers={
        "Origin": PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status_code == 204
    assert "Content-Type" not in response.headers and response.data == b"", "empty, not an empty text/html page"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
    assert response.headers["Access-Control-Max-Age"] == "7200"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert sent() == []


@pytest.mark.parametrize(("path", "kwargs", "status"), [
    ("/collect/1/1/event", {"json": EVENT}, 204),
    ("/collect/1/1/event", {"json": {}}, 400),
    ("/collect/x/1/event", {"json": EVENT}, 404),
    ("/collect/1/1/event", {"data": b"{}", "content_type": "application/xml"}, 415),
    ("/collect/1/1/event", {"data": b"x" * 70_000, "content_type": "application/json"}, 413),
])
def test_answers_and_errors_carry_cors_headers(client, path, kwargs, status):
    response = client.post(path, headers={"Origin": PAGE}, **kwargs)
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_restricted_origins(make_app):
    app = make_app(COLLECTOR_CORS_ORIGINS=PAGE)
    client = app.test_client()
    allowed = client.post("/collect/1/1/event", json=EVENT, headers={"Origin": PAGE})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == PAGE
    refused = client.post("/collect/1/1/event", data=BODY, content_type="text/plain;charset=UTF-8",
                          headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
    assert refused.get_json() == {"code": 403, "message": "origin http://evil.example may not send events here"}
    assert "Access-Control-Allow-Origin" not in refused.headers
    preflight = client.options("/collect/1/1/event", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    server_to_server = client.post("/collect/1/1/event", json=EVENT)  # no Origin: not a browser
    assert server_to_server.status_code == 204
    assert len(sent_by(app)) == 2


@pytest.mark.parametrize(("origin", "origins", "is_refused"), [
    (None, "*", False),  # not a browser
    (PAGE, "*", False),
    (None, (PAGE,), False),
    (PAGE, (PAGE, "https://www.example.com"), False),
    ("http://evil.example", (PAGE,), True),
    (PAGE + ":8080", (PAGE,), True),  # another port is another origin
    ("https://shop.example", (PAGE,), True),  # and another scheme
])
def test_which_origins_are_refused(origin, origins, is_refused):
    assert refused(origin, origins) is is_refused
