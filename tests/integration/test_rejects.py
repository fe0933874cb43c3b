"""The rejects stream with gunicorn and the real broker: exactly the refused events reach the
one rejects topic, with their reasons and bodies; no account topic is made for them; a flood
of bad requests puts no more than the rate limit's worth there."""
from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kafka import KafkaConsumer

from dev.events import read_records
from tests.helpers import Collector, account_id, metric, new_account, observe, replace_file

pytestmark = pytest.mark.integration

TOPIC = "collector.rejects"


def good(key: str) -> dict[str, Any]:
    return {"action": "view", "object": "form", "vendor": "V", "product": "P", "instance_id": key}


def rejects_of(broker: Any, aid: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The rejects keyed by ``aid``, read until at least ``count`` are there (or ``timeout``)."""
    def look() -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in read_records(broker.servers, TOPIC, timeout=5) if r.key == aid.encode()]

    return observe(look, lambda found: len(found) >= count, timeout)


def listed_topics(broker: Any) -> set[str]:
    consumer = KafkaConsumer(bootstrap_servers=broker.servers, api_version=(3, 9))
    try:
        return set(consumer.topics())  # every topic, creating none
    finally:
        consumer.close()


def test_exactly_the_refused_events_reach_the_rejects_topic_with_reason_and_body(broker, tmp_path, read_topic):
    aid = new_account(broker)
    registry = tmp_path / "registry.toml"
    replace_file(registry, f'[accounts.{aid}]\ntrackers = ["1"]\n')
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_REGISTRY": str(registry)}).start()
    try:
        assert collector.post_event(good("good-1"), aid=aid)[0] == 204
        bad = {k: v for k, v in good("bad-1").items() if k != "action"}
        status, _, answer = collector.post_event(bad, aid=aid, headers={"User-Agent": "sensor/2"})
        assert status == 400
        batch = json.dumps([good("good-2"), {**good("bad-2"), "score": "high"}]).encode()
        json_type = {"Content-Type": "application/json"}
        assert collector.request("POST", f"/collect/{aid}/1/events", batch, json_type)[0] == 200
        assert sorted(r.key for r in read_topic(f"events.{aid}", count=2)) == [b"good-1", b"good-2"]
        found = sorted(rejects_of(broker, aid, 2), key=lambda r: r["index"] is not None)
        time.sleep(1)  # anything more would have come with them
        assert len(rejects_of(broker, aid, 2)) == 2, "exactly the refused ones"
    finally:
        collector.stop()
    single, item = found
    assert (single["status"], single["message"], single["errors"]) == (
        400, json.loads(answer)["message"], {"action": ["is required"]})
    assert json.loads(single["body"]) == bad and single["user_agent"] == "sensor/2" and single["index"] is None
    assert (item["status"], item["index"], item["errors"]) == (400, 1, {"score": ["must be a number"]})
    assert json.loads(item["body"])["instance_id"] == "bad-2"
    assert {single["aid"], item["aid"], single["tid"], item["tid"]} == {aid, "1"}


def test_a_request_for_an_unknown_account_creates_no_topic(broker, tmp_path):
    registry = tmp_path / "registry.toml"
    replace_file(registry, '[accounts.1]\ntrackers = ["1"]\n')
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_REGISTRY": str(registry)}).start()
    unknown, malformed = account_id(), f"{account_id()}x"
    try:
        assert collector.post_event(good("to-nobody"), aid=unknown)[0] == 404
        assert collector.post_event(good("to-nobody"), aid=malformed)[0] == 404
        [reject] = rejects_of(broker, unknown, 1)  # the sender has been through both
        assert rejects_of(broker, malformed, 1)[0]["message"].startswith("no such collect path")
    finally:
        collector.stop()
    assert reject["status"] == 404 and reject["errors"] == {"aid": [f"account {unknown} is not registered"]}
    assert not {t for t in listed_topics(broker) if unknown in t or malformed in t}


def test_a_flood_of_bad_requests_puts_at_most_the_rate_limits_worth_on_the_topic(broker, tmp_path):
    rate, requests = 20, 10_000
    aid = account_id()
    collector = Collector(broker.servers, tmp_path, env={
        "COLLECTOR_REJECTS_PER_SECOND": str(rate), "COLLECTOR_REJECTS_PER_ACCOUNT": str(rate)}).start()
    body = json.dumps({"object": "flood"}).encode()

    def post(_: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=30)
        try:
            conn.request("POST", f"/collect/{aid}/1/event", body, {"Content-Type": "application/json"})
            return conn.getresponse().status
        finally:
            conn.close()

    try:
        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, range(requests)))
        took = time.monotonic() - began
        assert set(statuses) == {400}

        def counts() -> tuple[float, float, float]:
            text = collector.request("GET", "/metrics")[2].decode()
            return tuple(metric(text, f'collector_rejects_total{{outcome="{o}"}}')  # type: ignore[return-value]
                         for o in ("published", "sampled_out", "delivered"))

        published, sampled, delivered = observe(counts, lambda c: c[0] + c[1] >= requests and c[2] >= c[0], 60)
        on_topic = rejects_of(broker, aid, int(published))
    finally:
        collector.stop()
    bound = rate * took + rate  # the rate over the flood, and one second's burst (shared by the workers)
    assert (published + sampled, len(on_topic)) == (requests, published)
    assert 0 < len(on_topic) <= bound, f"{len(on_topic)} rejects in {took:.1f} s at {rate} a second"
