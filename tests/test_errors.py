"""The JSON error handlers (app/errors.py): one shape, ``{"code", "message", "errors"?}``, for
every error, its headers kept; a bug is logged and answered a plain 500."""
from __future__ import annotations

import logging

import pytest

from app.errors import APIError
from tests.helpers import EVENT


@pytest.fixture
def failing(make_app):
    """An app with a route that has a bug and one that refuses with an APIError."""
    app = make_app()

    def bug():
        raise RuntimeError("a secret detail")

    def refusal():
        raise APIError(418, "short and stout", {"handle": ["is missing"]}, {"X-Kettle": "on"})

    app.add_url_rule("/bug", view_func=bug)
    app.add_url_rule("/refusal", view_func=refusal)
    return app


WHERE = "events go to POST /collect/{aid}/{tid}/event (a batch: .../events); the API reference: /docs"


@pytest.mark.parametrize(("path", "status", "body", "headers"), [
    ("/no/such/route", 404, {"code": 404, "message": f"no such route: /no/such/route; {WHERE}"}, {}),
    ("/refusal", 418, {"code": 418, "message": "short and stout", "errors": {"handle": ["is missing"]}},
     {"X-Kettle": "on"}),
    ("/bug", 500, {"code": 500, "message": "internal error"}, {}),
])
def test_every_error_is_json_of_one_shape(failing, path, status, body, headers):
    response = failing.test_client().get(path)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json() == body
    assert {name: response.headers.get(name) for name in headers} == headers


def test_a_bug_is_logged_with_its_traceback_and_not_shown(failing, caplog):
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        response = failing.test_client().get("/bug")
    assert response.status_code == 500
    [record] = [r for r in caplog.records if r.name == "app.errors"]
    assert record.getMessage() == "unhandled error"
    assert record.exc_info is not None and str(record.exc_info[1]) == "a secret detail"
    assert "a secret detail" not in response.get_data(as_text=True)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_with_allow(client, sent, method):
    response = client.open("/collect/1/1/event", method=method, json=EVENT)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert response.get_json()["message"].startswith(f"{method} is not allowed here")
    assert sent() == []


@pytest.mark.parametrize(("method", "path", "message"), [
    ("GET", "/", f"no such route: /; {WHERE}"),
    ("POST", "/collect/1/1", f"no such route: /collect/1/1; {WHERE}"),
    ("POST", "/collect/1/1/event/",
     "no such route: /collect/1/1/event/ (without the trailing slash: /collect/1/1/event); the API reference: /docs"),
    ("POST", "/collect/1/1/events/",
     "no such route: /collect/1/1/events/ (without the trailing slash: /collect/1/1/events); "
     "the API reference: /docs"),
    ("GET", "/docs/", "no such route: /docs/ (without the trailing slash: /docs); the API reference: /docs"),
])
def test_a_path_no_route_serves_is_a_404_that_points_to_the_routes(client, sent, method, path, message):
    response = client.open(path, method=method, json=EVENT)
    assert response.status_code == 404
    assert response.get_json() == {"code": 404, "message": message}
    assert sent() == []


def test_without_the_docs_page_a_404_points_to_the_openapi_document(make_app):
    response = make_app(COLLECTOR_DOCS="false").test_client().get("/")
    assert response.get_json()["message"].endswith("the API reference: /openapi.json")
