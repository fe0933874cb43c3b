"""The collect routes end to end: gunicorn with 2 workers, a real Kafka-protocol broker, records
read back from Kafka."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest

from dev.events import read_records
from tests.helpers import ROOT, new_account, numbered

pytestmark = pytest.mark.integration


def test_events_reach_the_account_topic(collector, broker, read_topic):
    aid = new_account(broker)
    bodies = [
        {"action": "view", "object": "form", "vendor": "Vendor A", "product": "Product 1",
         "instance_id": f"chat-{i}", "label": "a lead", "score": i, "lead": {"name": "Ann", "i": i},
         "tags": ["a", 1.25, None, True]}
        for i in range(40)
    ]
    for body in bodies:
        status, headers, data = collector.post_event(body, aid=aid, tid="9",
                                                     headers={"User-Agent": "it-test/1"})
        assert (status, data) == (204, b"")

    records = read_topic(f"events.{aid}", count=len(bodies))
    assert len(records) == len(bodies)
    by_instance = {r.key.decode(): (r, json.loads(r.value)) for r in records}
    assert set(by_instance) == {f"chat-{i}" for i in range(40)}
    event_ids = set()
    for i, body in enumerate(bodies):
        record, event = by_instance[f"chat-{i}"]
        assert record.topic == f"events.{aid}"
        event_ids.add(event["event_id"])
        assert uuid.UUID(event["event_id"]).version == 4
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["received_at"])
        assert event["account_id"] == aid and event["tracker_id"] == "9"
        assert {k: event[k] for k in ("action", "object", "vendor", "product", "instance_id",
                                      "label", "score")} == {
            k: body[k] for k in ("action", "object", "vendor", "product", "instance_id", "label", "score")}
        assert event["properties"] == {"lead": body["lead"], "tags": body["tags"]}
        assert event["context"] == {"ip": "127.0.0.1", "user_agent": "it-test/1"}
    assert len(event_ids) == len(bodies)


def test_two_workers_deliver_every_event(collector, broker, read_topic):
    aid = new_account(broker)
    assert len(collector.worker_pids()) == 2
    for i in range(60):
        status, _, _ = collector.post_event({"action": "a", "object": "o", "vendor": "v",
                                             "product": "p", "instance_id": str(i)}, aid=aid)
        assert status == 204
    assert len(read_topic(f"events.{aid}", count=60)) == 60


def test_bad_input_over_http_is_json_and_never_reaches_kafka(collector, broker, read_topic):
    aid = new_account(broker)
    bad = [
        ("POST", f"/collect/{aid}/1/event", b"{", {"Content-Type": "application/json"}, 400),
        ("POST", f"/collect/{aid}/1/event", b'{"action":"view"}', {}, 400),
        ("POST", f"/collect/{aid}/x/event", b"{}", {}, 404),
        ("GET", f"/collect/{aid}/1/event", None, {}, 405),
        ("POST", f"/collect/{aid}/1/event", b"<a/>", {"Content-Type": "text/xml"}, 415),
        ("POST", f"/collect/{aid}/1/event", b"[" * 100_000, {}, 413),
        ("POST", f"/collect/{aid}/1/event", b"[" * 60_000, {}, 400),
    ]
    for method, path, body, headers, status in bad:
        got, response_headers, data = collector.request(method, path, body, headers)
        assert got == status, (path, body[:20] if body else body, data)
        assert response_headers["Content-Type"] == "application/json"
        assert json.loads(data)["code"] == status
    good = {"action": "view", "object": "o", "vendor": "v", "product": "p", "instance_id": "only"}
    assert collector.post_event(good, aid=aid)[0] == 204
    records = read_topic(f"events.{aid}", timeout=5)
    assert [r.key for r in records] == [b"only"]


def test_a_mixed_batch_through_gunicorn_reaches_kafka_in_order(collector, broker):
    aid = new_account(broker)
    batch = [numbered(i, instance_id="same") if i % 3 else {"action": i} for i in range(30)]
    status, _, data = collector.request("POST", f"/collect/{aid}/1/events", json.dumps(batch).encode(),
                                        {"Content-Type": "application/json"})
    assert status == 200
    answer = json.loads(data)
    assert answer["accepted"] == 20 and [r["index"] for r in answer["rejected"]] == list(range(0, 30, 3))
    status, _, data = collector.request("POST", f"/collect/{aid}/1/events?validate=true",
                                        json.dumps([numbered(99)]).encode(), {"Content-Type": "application/json"})
    assert status == 200 and json.loads(data)["accepted"] == 1
    status, _, _ = collector.post_event(numbered(100), aid=aid, tid="1")
    records = read_records(broker.servers, f"events.{aid}", count=21)
    by_key = [json.loads(r.value)["properties"]["n"] for r in records if r.key == b"same"]
    assert by_key == [i for i in range(30) if i % 3]  # one key, one partition, in batch order
    assert sorted(json.loads(r.value)["properties"]["n"] for r in records if r.key != b"same") == [100]


def test_events_command_prints_an_accounts_events(collector, broker):
    aid = new_account(broker)
    event = {"action": "view", "object": "form", "vendor": "V", "product": "P", "instance_id": "cli"}
    assert collector.post_event(event, aid=aid)[0] == 204
    out = subprocess.run([sys.executable, "-m", "dev.events", "0" + aid, "--servers", broker.servers],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    [line] = out.stdout.splitlines()
    printed = json.loads(line)
    assert printed["topic"] == f"events.{aid}" and printed["key"] == "cli"
    assert printed["value"]["instance_id"] == "cli"
    assert out.stderr == f"1 event on events.{aid} at {broker.servers}\n", "the account as the collector spells it"


def test_a_preflight_through_gunicorn_is_an_empty_204(collector):
    status, headers, body = collector.request("OPTIONS", "/collect/1/1/event", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert (status, body) == (204, b"")
    assert "Content-Type" not in headers, "not an empty text/html page"
    assert headers["Access-Control-Allow-Origin"] == "*" and headers["Access-Control-Allow-Methods"] == "POST"


@pytest.mark.parametrize("method, path", [("GET", "/"), ("POST", "/collect/1/1"), ("POST", "/collect/1/1/event/")])
def test_a_path_no_route_serves_is_a_json_404_pointing_to_the_docs(collector, method, path):
    status, headers, body = collector.request(method, path, b"{}", {"Content-Type": "application/json"})
    assert (status, headers["Content-Type"]) == (404, "application/json")
    message = json.loads(body)["message"]
    assert message.startswith(f"no such route: {path}") and message.endswith("the API reference: /docs")
