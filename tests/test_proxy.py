"""The proxies in front (app/proxy.py): whose X-Forwarded-For gives the event's context.ip."""
from __future__ import annotations

import pytest

from tests.helpers import EVENT, sent_by


@pytest.mark.parametrize(("hops", "forwarded", "ip"), [
    (0, "6.6.6.6", "10.0.0.1"),  # trusts no proxy: the peer's address
    (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the entry the one trusted proxy added
    (2, "6.6.6.6, 203.0.113.7", "6.6.6.6"),
])
def test_the_client_address_behind_proxies(make_app, hops, forwarded, ip):
    app = make_app(COLLECTOR_PROXY_HOPS=hops)
    response = app.test_client().post("/collect/1/1/event", json=EVENT, environ_base={"REMOTE_ADDR": "10.0.0.1"},
                                      headers={"X-Forwarded-For": forwarded})
    assert response.status_code == 204
    [record] = sent_by(app)
    assert record["value"]["context"]["ip"] == ip
