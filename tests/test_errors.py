"""The JSON error handlers (app/errors.py): one shape for every error."""
from __future__ import annotations

import pytest

from tests.helpers import EVENT


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_with_allow(client, sent, method):
    response = client.open("/collect/1/1/event", method=method, json=EVENT)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert response.get_json()["message"].startswith(f"{method} is not allowed here")
    assert sent() == []
