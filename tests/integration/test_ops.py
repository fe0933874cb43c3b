"""Operating it for real: metrics added up across gunicorn's workers, and a real nginx in front."""
from __future__ import annotations

import http.client
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dev.broker import free_port, wait_for_port
from dev.events import read_records
from tests.helpers import EVENT, ROOT, Collector, metric, new_account, wait_until

pytestmark = pytest.mark.integration


def test_metrics_add_up_across_workers(collector, broker):
    aid = new_account(broker)
    for i in range(40):
        assert collector.post_event({**EVENT, "instance_id": str(i)}, aid=aid)[0] == 204
    assert len(read_records(broker.servers, f"events.{aid}", count=40)) == 40

    def counted_40() -> bool:  # each worker adds its counts every send interval
        _, _, body = collector.request("GET", "/metrics")
        text = body.decode()
        return (metric(text, 'collector_events_total{outcome="delivered"}') == 40
                and metric(text, 'collector_events_total{outcome="accepted"}') == 40)

    wait_until(counted_40, what="40 events accepted and delivered, counted over both workers")
    _, _, body = collector.request("GET", "/metrics")
    text = body.decode()
    assert metric(text, 'collector_events_total{outcome="accepted"}') == 40
    assert metric(text, 'collector_events_total{outcome="lost"}') == 0
    assert metric(text, "collector_pending_events") == 0
    assert len(collector.worker_pids()) == 2
    status, _, body = collector.request("GET", "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready"})


@pytest.fixture
def nginx(tmp_path: Path):
    """Start nginx with deploy/nginx.conf in front of a port; yields (start, port)."""
    if not shutil.which("nginx"):
        pytest.fail("nginx is needed: apt-get install nginx-light (make test does)")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start(upstream_port: int) -> int:
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
        (tmp_path / "site.conf").write_text(site)
        (tmp_path / "nginx.conf").write_text(f"""
daemon off; user root; worker_processes 1; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;
  fastcgi_temp_path {tmp_path}/fcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;
  include {tmp_path}/site.conf;
}}""")
        proc = subprocess.Popen(["nginx", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)])
        procs.append(proc)
        wait_for_port(port, proc=proc)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_behind_a_real_nginx(nginx, broker, tmp_path):
    aid = new_account(broker)
    token = "nginx-debug-token-0123456789"
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_PROXY_HOPS": "1",
                                                         "COLLECTOR_DEBUG_TOKEN": token}).start()
    try:
        port = nginx(collector.port)

        def post(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
            try:
                conn.request("POST", f"/collect/{aid}/1/event", body=body,
                             headers={"Content-Type": "application/json", **headers})
                response = conn.getresponse()
                return response.status, response.read()
            finally:
                conn.close()

        assert post({}, json.dumps({**EVENT, "instance_id": "plain"}).encode())[0] == 204
        assert post({"X-Forwarded-For": "6.6.6.6"}, json.dumps({**EVENT, "instance_id": "spoofed"}).encode())[0] == 204
        status, body = post({}, b'{"pad": "' + b"x" * 70_000 + b'"}')
        assert status == 413
        assert json.loads(body)["code"] == 413
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics")
        assert conn.getresponse().status == 404
        conn.close()
        for headers, status in (({}, 401), ({"Authorization": f"Bearer {token}"}, 200)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # loopback: an internal network
            conn.request("GET", f"/debug/{aid}/1/records", headers=headers)
            assert conn.getresponse().status == status
            conn.close()
        records = read_records(broker.servers, f"events.{aid}", count=2)
        ips = {r.key.decode(): json.loads(r.value)["context"]["ip"] for r in records}
        assert ips == {"plain": "127.0.0.2", "spoofed": "127.0.0.2"}
    finally:
        collector.stop()
