"""Every caller the endpoint promises, with the real thing: headless Chromium, raw HTTP/1.0,
curl, chunked bodies, a client that stalls mid-body. Events are read back from Kafka."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dev.broker import Broker
from dev.events import read_records
from tests.helpers import Collector, new_account, raw_http

pytestmark = pytest.mark.integration



def event(instance_id: str) -> dict[str, str]:
    return {"action": "view", "object": "page", "vendor": "V", "product": "P", "instance_id": instance_id}


def keys(broker: Broker, aid: str, count: int | None = None) -> list[str]:
    return sorted(r.key.decode() for r in read_records(broker.servers, f"events.{aid}", count=count, timeout=10))


# -- devices -----------------------------------------------------------------------------

def test_raw_http_1_0_without_content_type(collector, broker):
    aid = new_account(broker)
    body = json.dumps(event("device-1")).encode()
    answer = raw_http(collector.port, b"POST /collect/%s/1/event HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (aid.encode(), len(body), body))
    assert answer.split(b"\r\n")[0].split()[1] == b"204"
    assert keys(broker, aid, 1) == ["device-1"]


def test_curl_http_1_0(collector, broker):
    aid = new_account(broker)
    out = subprocess.run(
        ["curl", "--http1.0", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
         "-H", "Content-Type: application/json", "--data-binary", json.dumps(event("curl-1")),
         f"http://127.0.0.1:{collector.port}/collect/{aid}/1/event"],
        capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout == "204"
    assert keys(broker, aid, 1) == ["curl-1"]


def chunked(body: bytes, size: int) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_chunked_bodies(collector, broker):
    aid = new_account(broker)
    head = b"POST /collect/%s/1/event HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    body = json.dumps({**event("chunked-1"), "note": "sent in pieces"}).encode()
    answer = raw_http(collector.port, head % aid.encode() + chunked(body, 16))
    assert answer.split()[1] == b"204"
    too_big = json.dumps({**event("chunked-2"), "pad": "x" * 70_000}).encode()
    answer = raw_http(collector.port, head % aid.encode() + chunked(too_big, 8192))
    assert answer.split()[1] == b"413"
    assert b"the body is larger than the limit of 65536 bytes" in answer
    assert keys(broker, aid) == ["chunked-1"]


def test_a_client_that_stalls_mid_body_frees_the_worker(broker, tmp_path):
    aid = new_account(broker)
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_BODY_TIMEOUT_MS": "1000"}, workers=1).start()
    try:
        [worker] = collector.worker_pids()
        stalled = socket.create_connection(("127.0.0.1", collector.port), timeout=15)
        stalled.sendall(b"POST /collect/%s/1/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 200\r\n\r\n{\"action\": \"vi" % aid.encode())
        # The only worker is busy with the stalled body; this request waits for it, then is served.
        status, _, _ = collector.post_event(event("after-stall"), aid=aid)
        assert status == 204
        answer = stalled.recv(65536)
        stalled.close()
        assert answer.split()[1] == b"408"
        assert b"the body ended early or did not arrive within 1000 ms" in answer
        assert collector.worker_pids() == [worker], "the worker was freed, not killed by gunicorn"
        assert keys(broker, aid, 1) == ["after-stall"]
    finally:
        collector.stop()
    assert "WORKER TIMEOUT" not in collector.log.read_text()


# -- browsers ----------------------------------------------------------------------------

PAGE = b"<!doctype html><title>shop</title><p>a page on another origin"

SEND = """
const [url, first, second, bad, done] = arguments;
const result = {ua: navigator.userAgent};
try {
  const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                              body: JSON.stringify(first)});
  result.fetch = r.status;
  const e = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                              body: JSON.stringify(bad)});
  result.error = {status: e.status, body: await e.json()};
} catch (err) {
  result.fetch = String(err);
}
result.beacon = navigator.sendBeacon(url, JSON.stringify(second));
done(result);
"""


@pytest.fixture(scope="session")
def page_origin() -> Iterator[str]:
    """A page served from another origin (another port) on loopback."""
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def send_from_page(chromium: Any, page: str, collector: Collector, aid: str) -> dict[str, Any]:
    chromium.get(page)
    url = f"http://127.0.0.1:{collector.port}/collect/{aid}/1/event"
    return chromium.execute_async_script(SEND, url, event("by-fetch"), event("by-beacon"), {"action": "view"})


def test_a_page_on_another_origin_sends_with_fetch_and_sendbeacon(chromium, page_origin, collector, broker):
    aid = new_account(broker)
    result = send_from_page(chromium, page_origin, collector, aid)
    assert result["fetch"] == 204
    assert result["beacon"] is True
    assert result["error"]["status"] == 400  # the page can read the error: CORS headers on errors too
    assert result["error"]["body"]["errors"]["object"] == ["is required"]
    records = read_records(broker.servers, f"events.{aid}", count=2, timeout=20)
    events = {r.key.decode(): json.loads(r.value) for r in records}
    assert set(events) == {"by-fetch", "by-beacon"}
    for e in events.values():
        assert e["context"]["user_agent"] == result["ua"]
        assert "HeadlessChrome" in e["context"]["user_agent"]
        assert e["context"]["referer"].startswith(page_origin)


def test_a_disallowed_origin_is_refused(chromium, page_origin, broker, tmp_path: Path):
    aid = new_account(broker)
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_CORS_ORIGINS": "https://www.example.com"}).start()
    try:
        result = send_from_page(chromium, page_origin, collector, aid)
        assert result["fetch"].startswith("TypeError")  # the preflight gave the page no permission
        assert result["beacon"] is True  # queued by the browser, then refused by the collector
        assert collector.post_event(event("control"), aid=aid)[0] == 204  # no Origin: a back end
        assert keys(broker, aid, 1) == ["control"]
        assert keys(broker, aid) == ["control"]
    finally:
        collector.stop()
    assert f'"POST /collect/{aid}/1/event HTTP/1.1" 403' in collector.log.read_text()
