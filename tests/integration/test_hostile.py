"""Hostile input against gunicorn and the real broker: the published contract fuzzed
(Schemathesis), ids that would reach topic names, values that would forge log lines."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from tests.helpers import EVENT, Collector, raw_http

pytestmark = pytest.mark.integration

SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_nothing(collector):
    out = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(SCHEMATHESIS_CONFIG),
         "run", f"http://127.0.0.1:{collector.port}/openapi.json", "--checks", "all",
         "--max-examples", "40", "--request-timeout", "10", "--workers", "1", "--no-color"],
        capture_output=True, text=True, timeout=600)
    summary = "\n".join(out.stdout.splitlines()[-25:])
    print(summary)
    assert out.returncode == 0, out.stdout[-8000:]
    assert re.search(r"\d+ generated, \d+ passed", summary)


TRICKS = ["..%2F1", "%2F1", "1%2F..%2F2", "%D9%A1%D9%A2%D9%A3", "%EF%BC%91", "1%00", "1%0A", "1%20",
          "+1", "1e3", "0x1", "%2E%2E", "..", "1;2", "1%3B2", "00000000-0000-0000-0000-00000000000g"]


@pytest.mark.parametrize("aid", TRICKS)
def test_path_tricks_never_reach_a_topic(collector, broker, aid):
    body = json.dumps({**EVENT, "instance_id": "trick"}).encode()
    answer = raw_http(collector.port, b"POST /collect/%s/1/event HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (aid.encode(), len(body), body))
    assert answer.split()[1] in (b"400", b"404")
    consumer = KafkaConsumer(bootstrap_servers=broker.servers, api_version=(3, 9))
    try:
        topics = consumer.topics()
    finally:
        consumer.close()
    assert all(re.fullmatch(r"events\.(\d+|[0-9a-f-]{36})", t) for t in topics if t.startswith("events"))


def test_caller_values_cannot_forge_log_lines(broker, tmp_path):
    collector = Collector(broker.servers, tmp_path).start()
    # gunicorn refuses ASCII control characters in a request; these bytes it lets through
    # (as latin-1): NEL (0x85) and UTF-8's LINE SEPARATOR, which split lines in Python and
    # in many log viewers.
    forged = b"a\x85[2026-01-01 00:00:00 +0000] [1] [ERROR] forged\xe2\x80\xa8b"
    try:
        body = json.dumps(EVENT).encode()
        answer = raw_http(collector.port, b"POST /collect/1/1/event HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (forged, len(body), body))
        assert answer.split()[1] == b"204"
    finally:
        collector.stop()
    log = collector.log.read_text()
    assert "forged" in log  # the user agent is in the access log, escaped
    assert all(line.startswith("[") for line in log.splitlines()), "every line is one the collector wrote"
