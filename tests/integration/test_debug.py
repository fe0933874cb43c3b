"""The live debugger against gunicorn (2 workers) and the real broker: what it shows is what
reached Kafka, it creates no topic, it asks for its token; in headless Chromium, a good and a bad
event sent with curl both show."""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from selenium.webdriver.common.by import By

from dev.broker import Broker
from tests.helpers import EVENT, ROOT, Collector, account_id, new_account, observe, wait_until

pytestmark = pytest.mark.integration
TOKEN = "integration-debug-token-" + uuid.uuid4().hex
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SCREENSHOT = ROOT / "docs" / "debug-page.png"  # the README's; remade with SCREENSHOTS=1


@pytest.fixture
def debugger(broker: Broker, tmp_path: Path) -> Iterator[Collector]:
    """gunicorn with 2 workers and the debugger on."""
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_DEBUG_TOKEN": TOKEN}).start()
    yield collector
    collector.stop()


def records(collector: Collector, aid: str, tid: str = "1", headers: dict[str, str] = BEARER) -> tuple[int, Any]:
    """The debugger's JSON answer for a tracker: (status, body); a 429 (another read) is asked again."""
    def ask() -> tuple[int, Any]:
        status, _, body = collector.request("GET", f"/debug/{aid}/{tid}/records", headers=headers)
        return status, json.loads(body)

    return observe(ask, lambda answer: answer[0] != 429, timeout=10)


def topics(broker: Broker) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=broker.servers, api_version=(3, 9))
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_the_debugger_shows_an_event_as_it_reached_kafka(debugger, broker, read_topic):
    aid = new_account(broker)
    assert debugger.post_event({**EVENT, "instance_id": "shown"}, aid=aid)[0] == 204
    assert debugger.post_event({**EVENT, "instance_id": "other tracker"}, aid=aid, tid="2")[0] == 204
    [record] = [r for r in read_topic(f"events.{aid}", count=2) if r.key == b"shown"]
    status, body = observe(lambda: records(debugger, f"00{aid}"), lambda a: bool(a[1].get("events")), timeout=20)
    assert status == 200
    [shown] = body["events"]
    assert shown["value"] == json.loads(record.value), "the curated record, byte for byte as Kafka has it"
    assert (shown["partition"], shown["offset"], shown["timestamp"], shown["key"]) == (
        record.partition, record.offset, record.timestamp, "shown")


def test_reading_an_account_without_a_topic_creates_none(debugger, broker):
    aid = account_id()
    before = topics(broker)
    status, body = records(debugger, aid)
    assert (status, body["events"]) == (200, [])
    assert f"events.{aid}" not in topics(broker)
    assert topics(broker) == before, "nor the rejects topic, where there is none yet"


def test_without_the_right_token_nothing_is_read(debugger):
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        status, body = records(debugger, "1", headers=headers)
        assert (status, body["code"]) == (401, 401)
    status, headers, _ = debugger.request("GET", "/debug/1/1?token=not-the-token")
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="collector debugger"')


def curl(port: int, aid: str, body: str) -> str:
    """Send an event as a user would, with curl: the status it printed."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
               f"http://127.0.0.1:{port}/collect/{aid}/1/event", "-H", "Content-Type: application/json", "-d", body]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout


def section(driver: Any, name: str) -> str:
    return driver.find_element(By.ID, name).text


def test_a_good_and_a_bad_event_sent_with_curl_show_on_the_page(chromium, debugger, tmp_path):
    """The issue's own check: the page open with the token, a good and a bad event sent with curl,
    both on the page within 3 s; without the token, the page is the 401."""
    base = f"http://127.0.0.1:{debugger.port}"
    marker = uuid.uuid4().hex[:12]
    chromium.set_window_size(1280, 900)
    chromium.get(f"{base}/debug/1/1?token={TOKEN}")
    wait_until(lambda: section(chromium, "status").startswith("updated"), timeout=30, what="the page's first answer")
    good = json.dumps({**EVENT, "vendor": "Vendor A", "product": "Product 1", "instance_id": f"good-{marker}"})
    bad = json.dumps({"object": "form", "vendor": "Vendor A", "product": "Product 1", "instance_id": f"bad-{marker}",
                      "score": "high"})
    assert (curl(debugger.port, "1", good), curl(debugger.port, "1", bad)) == ("204", "400")
    events, rejects = observe(lambda: (section(chromium, "events"), section(chromium, "rejects")),
                              lambda seen: f"good-{marker}" in seen[0] and f"bad-{marker}" in seen[1], timeout=3)
    assert f"good-{marker}" in events, "the good event, read back from Kafka, on the page within 3 s"
    assert f"bad-{marker}" in rejects, "the bad event, from the rejects stream, on the page within 3 s"
    assert "is required" in rejects
    shot = SCREENSHOT if os.environ.get("SCREENSHOTS") == "1" else tmp_path / SCREENSHOT.name
    assert chromium.save_screenshot(str(shot)) and shot.read_bytes().startswith(b"\x89PNG")
    chromium.get(f"{base}/debug/1/1")
    page = chromium.find_element(By.TAG_NAME, "body").text
    assert json.loads(page) == {"code": 401, "message": "the live debugger needs its token: Authorization: Bearer "
                                                         "TOKEN, or ?token=TOKEN"}


def test_a_reject_shows_with_its_reasons_and_its_body_only_as_text(chromium, debugger, broker):
    """A reject as the rejects stream writes it (produced here), keyed by the account as sent:
    its body, an attacker's HTML, is shown as text and never becomes part of the page."""
    aid = account_id()
    marker = uuid.uuid4().hex[:12]
    body = f'<img src=x id="pwned-{marker}" onerror="document.title=\'pwned\'"><b>{marker}</b>'
    reject = {"received_at": "2026-11-29T23:40:00.718Z", "aid": f"00{aid}", "tid": "1",
              "path": f"/collect/00{aid}/1/event", "status": 400,
              "message": "the event was not tracked: action is required",
              "errors": {"action": ["Missing data for required field."]}, "index": None, "user_agent": "curl/8.0",
              "origin": None, "ip": "127.0.0.1", "body": body, "body_bytes": len(body)}
    broker.create_topic("collector.rejects")  # as the rejects stream would have; no matter if it has
    producer = KafkaProducer(bootstrap_servers=broker.servers, api_version=(3, 9))
    producer.send("collector.rejects", key=f"00{aid}".encode(), value=json.dumps(reject).encode())
    producer.flush()
    producer.close()
    chromium.get(f"http://127.0.0.1:{debugger.port}/debug/{aid}/1?token={TOKEN}")
    wait_until(lambda: marker in section(chromium, "rejects"), timeout=20, what="the reject on the page")
    shown = section(chromium, "rejects")
    assert "the event was not tracked: action is required" in shown
    assert "action\nMissing data for required field." in shown
    assert body in shown, "the body as text, tags and all"
    assert chromium.find_elements(By.ID, f"pwned-{marker}") == [] and chromium.title != "pwned"
    assert section(chromium, "events") == "no events of this tracker yet"
    log = debugger.log.read_text()
    assert f"GET /debug/{aid}/1?token=… HTTP/1.1" in log and TOKEN not in log, "the token never reaches the log"
