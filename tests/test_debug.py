"""The live debugger's routes (app/debug.py) on fake Kafka clients: off by default, the token,
the ids, one read per host, the time bound, and a page that renders callers' values as text only."""
from __future__ import annotations

import json
import os
import re
import threading

import pytest

import app.debug
from app.readback import SHOWN, take_lock
from tests.fakes import FakeKafkaConsumer
from tests.helpers import ONE_ACCOUNT, replace_file, wait_until

TOKEN = "s3cret-debug-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ROUTES = ["/debug/1/1", "/debug/1/1/records"]


@pytest.fixture
def debug_app(make_app, tmp_path):
    app = make_app(COLLECTOR_DEBUG_TOKEN=TOKEN)
    (tmp_path / "spool").mkdir(exist_ok=True)
    return app


def event(n: int, tracker: str = "1", account: str = "1") -> tuple[int, bytes, bytes]:
    """Event number ``n`` as the events topic holds it: (timestamp, key, value)."""
    value = {"event_id": f"e{n}", "account_id": account, "tracker_id": tracker, "received_at": f"t{n}",
             "action": "view", "object": "form", "vendor": "V", "product": "P", "instance_id": f"i{n}"}
    return 1_700_000_000_000 + n, f"i{n}".encode(), json.dumps(value).encode()


def reject(n: int, aid: str = "1", tid: str = "1") -> tuple[int, bytes, bytes]:
    """Reject number ``n`` as the rejects topic holds it, keyed by the account as sent."""
    value = {"received_at": f"t{n}", "aid": aid, "tid": tid, "status": 400, "message": "action is required",
             "errors": {"action": ["is required"]}, "body": "<img src=x onerror=alert(1)>", "body_bytes": 28}
    return 1_700_000_000_000 + n, aid.encode(), json.dumps(value).encode()


@pytest.mark.parametrize("path", ROUTES)
def test_the_debugger_is_off_unless_its_token_is_set(make_app, path):
    answer = make_app().test_client().get(path, headers=BEARER)
    assert answer.status_code == 404
    assert answer.get_json() == {"code": 404,
                                 "message": "the live debugger is off: set COLLECTOR_DEBUG_TOKEN to turn it on"}
    assert FakeKafkaConsumer.made == []


@pytest.mark.parametrize(("headers", "query", "status", "message"), [
    ({}, "", 401, "the live debugger needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN"),
    ({"Authorization": "Bearer wrong-token-wrong-token"}, "", 401, "the live debugger's token is not this one"),
    ({"Authorization": f"Bearer {TOKEN}x"}, "", 401, "the live debugger's token is not this one"),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "", 401, "the live debugger's token is not this one"),
    ({"Authorization": "Bearer ünïcode"}, "", 401, "the live debugger's token is not this one"),
    ({"Authorization": f"Basic {TOKEN}"}, "", 401, "the live debugger needs its token: Authorization: Bearer TOKEN, "
                                                  "or ?token=TOKEN"),
    ({}, "?token=wrong", 401, "the live debugger's token is not this one"),
    (BEARER, "", 200, None),
    ({"Authorization": f"bearer {TOKEN}"}, "", 200, None),
    ({}, f"?token={TOKEN}", 200, None),
], ids=["none", "wrong", "longer", "shorter", "not-ascii", "basic", "wrong-query", "bearer", "lower-case", "query"])
@pytest.mark.parametrize("path", ROUTES)
def test_every_request_carries_the_token(debug_app, path, headers, query, status, message):
    answer = debug_app.test_client().get(path + query, headers=headers)
    assert answer.status_code == status
    if status == 401:
        assert answer.get_json() == {"code": 401, "message": message}
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="collector debugger"'
        assert FakeKafkaConsumer.made == [], "nothing is read for a caller without the token"


def test_the_token_is_compared_in_constant_time(debug_app, monkeypatch):
    compared = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(app.debug.hmac, "compare_digest", compare_digest)
    client = debug_app.test_client()
    assert client.get("/debug/1/1/records", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/debug/1/1/records", headers=BEARER).status_code == 200
    assert compared == [(b"wrong", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


@pytest.mark.parametrize("path", ["/debug/{aid}/1", "/debug/{aid}/1/records"])
@pytest.mark.parametrize("aid", ["abc", "0", "1.5", "-1", "12345678901234567890123"])
def test_a_malformed_id_is_collects_own_404(debug_app, path, aid):
    client = debug_app.test_client()
    answer = client.get(path.format(aid=aid), headers=BEARER)
    collect = client.post(f"/collect/{aid}/1/event", json={})
    assert (answer.status_code, answer.get_json()) == (404, collect.get_json())
    assert FakeKafkaConsumer.made == []


def test_an_unregistered_id_is_collects_own_404_and_only_after_the_token(make_app, tmp_path):
    registry = tmp_path / "registry.toml"
    replace_file(registry, ONE_ACCOUNT)
    client = make_app(COLLECTOR_DEBUG_TOKEN=TOKEN, COLLECTOR_REGISTRY=str(registry)).test_client()
    (tmp_path / "spool").mkdir(exist_ok=True)
    answer = client.get("/debug/2/1/records", headers=BEARER)
    assert (answer.status_code, answer.get_json()) == (404, client.post("/collect/2/1/event", json={}).get_json())
    assert client.get("/debug/2/1/records").status_code == 401, "without the token, which accounts exist is not told"
    assert client.get("/debug/1/1/records", headers=BEARER).status_code == 200


def test_the_answer_is_the_trackers_events_and_rejects_newest_first(debug_app):
    FakeKafkaConsumer.topics = {
        "events.7": {0: [event(1, account="7"), event(3, "2", "7"), event(4, account="7")],
                     1: [event(2, account="7"), (1_700_000_000_009, b"k", b"not json"), event(5, "2", "7")]},
        "collector.rejects": {0: [reject(1, "007"), reject(2, "8")], 1: [reject(3, "7", "01"), reject(4, "7", "2")]},
    }
    answer = debug_app.test_client().get("/debug/007/01/records", headers=BEARER)
    assert answer.status_code == 200
    body = answer.get_json()
    assert [e["value"]["event_id"] for e in body["events"]] == ["e4", "e2", "e1"]
    assert {k: body["events"][0][k] for k in ("partition", "offset", "timestamp", "key")} == {
        "partition": 0, "offset": 2, "timestamp": 1_700_000_000_004, "key": "i4"}
    assert [(r["value"]["aid"], r["value"]["tid"]) for r in body["rejects"]] == [("7", "01"), ("007", "1")]
    assert "note" not in body
    assert all(c.closed for c in FakeKafkaConsumer.made)


def test_an_account_without_a_topic_shows_no_events(debug_app):
    answer = debug_app.test_client().get("/debug/1/1/records", headers=BEARER)
    assert (answer.status_code, answer.get_json()) == (200, {"events": [], "rejects": []})


def test_at_most_the_newest_fifty_of_each_are_shown(debug_app):
    FakeKafkaConsumer.topics = {"events.1": {0: [event(n) for n in range(80)]},
                                "collector.rejects": {0: [reject(n) for n in range(70)]}}
    body = debug_app.test_client().get("/debug/1/1/records", headers=BEARER).get_json()
    assert [e["value"]["event_id"] for e in body["events"]] == [f"e{n}" for n in range(79, 79 - SHOWN, -1)]
    assert len(body["rejects"]) == SHOWN and body["rejects"][0]["value"]["received_at"] == "t69"


def test_one_read_per_host_at_a_time_the_others_get_429(debug_app, tmp_path):
    held = take_lock(str(tmp_path / "spool"))  # as another worker's read would
    try:
        answer = debug_app.test_client().get("/debug/1/1/records", headers=BEARER)
        assert answer.status_code == 429
        assert answer.headers["Retry-After"] == "1"
        assert answer.get_json()["message"] == "another debugger read is under way on this host: try again in a second"
    finally:
        os.close(held)
    assert debug_app.test_client().get("/debug/1/1/records", headers=BEARER).status_code == 200


def in_thread(call):
    """``call()``'s result, run on a thread; None if it has not returned within 15 s (a generous bound)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(15)
    return result[0] if result else None


def test_a_kafka_that_does_not_answer_is_a_503_not_a_hung_worker(debug_app):
    FakeKafkaConsumer.topics = {"events.1": {0: [event(1)]}, "collector.rejects": {0: [reject(1)]}}
    FakeKafkaConsumer.stalled = {"events.1", "collector.rejects"}
    answer = in_thread(lambda: debug_app.test_client().get("/debug/1/1/records", headers=BEARER))
    assert answer is not None, "the request waited on Kafka"
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
    assert answer.get_json()["message"] == "the debugger read nothing: Kafka did not answer within 1 s"
    again = debug_app.test_client().get("/debug/1/1/records", headers=BEARER)
    assert again.status_code == 429, "the stalled read still holds the host's lock"
    FakeKafkaConsumer.thaw.set()  # the read ends once Kafka answers, and lets the host's lock go
    wait_until(lambda: FakeKafkaConsumer.made[0].closed, what="the stalled read's consumer closed")
    FakeKafkaConsumer.stalled = set()
    assert debug_app.test_client().get("/debug/1/1/records", headers=BEARER).status_code == 200


def test_rejects_not_read_in_time_leave_the_events_and_a_note(debug_app):
    FakeKafkaConsumer.topics = {"events.1": {0: [event(1)]}, "collector.rejects": {0: [reject(1)]}}
    FakeKafkaConsumer.stalled = {"collector.rejects"}
    answer = in_thread(lambda: debug_app.test_client().get("/debug/1/1/records", headers=BEARER))
    assert answer is not None and answer.status_code == 200
    body = answer.get_json()
    assert ([e["value"]["event_id"] for e in body["events"]], body["rejects"], body["note"]) == (
        ["e1"], None, "Kafka did not answer within 1 s")


def test_the_page_renders_callers_values_as_text_and_loads_nothing_else(debug_app):
    answer = debug_app.test_client().get(f"/debug/007/1?token={TOKEN}")
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    policy = answer.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([\w-]+)'", policy).group(1)
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    assert re.findall(r"<script[^>]*>", page) == [f'<script nonce="{nonce}">'], "one inline script, of this nonce"
    assert re.findall(r"<style[^>]*>", page) == [f'<style nonce="{nonce}">']
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "src=", "href="):
        assert sink not in page
    assert "account 7, tracker 1" in page
    assert nonce != re.search(r"nonce-([\w-]+)", debug_app.test_client().get(
        "/debug/1/1", headers=BEARER).headers["Content-Security-Policy"]).group(1), "a nonce per answer"


@pytest.mark.parametrize("path", [*ROUTES, "/debug/x/1"])
@pytest.mark.parametrize("headers", [{}, BEARER], ids=["refused", "allowed"])
def test_no_answer_is_stored_or_tells_its_address(debug_app, path, headers):
    answer = debug_app.test_client().get(path, headers=headers)
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
