"""The JSON error handlers (app/errors.py): one shape, ``{"code", "message", "errors"?}``, for
every error, its headers kept; a bug is logged and answered a plain 500."""
from __future__ import annotations

import logging

import pytest
from werkzeug.exceptions import NotFound

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


@pytest.mark.parametrize(("path", "status", "body", "headers"), [
    ("/no/such/route", 404, {"code": 404, "message": NotFound.description}, {}),
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
