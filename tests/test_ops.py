"""Operating it: health, readiness, metrics, the client's address behind proxies, a real nginx."""
from __future__ import annotations

import http.client
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dev.broker import free_port, wait_for_port
from dev.events import read_records

from .fakes import FakeKafkaAdmin
from .helpers import ROOT, Collector, metric, new_account, sent_by, wait_until

EVENT = {"action": "view", "object": "form", "vendor": "V", "product": "P", "instance_id": "i1"}


def test_healthz(client):
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_follows_whether_kafka_answers(make_app, monkeypatch):
    app = make_app()
    client = app.test_client()
    assert client.get("/readyz").status_code == 503  # nothing heard yet: not started
    client.post("/collect/1/1/event", json=EVENT)  # starts the outbox; the replayer probes
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")
    assert client.get("/readyz").get_json() == {"status": "ready"}

    def no_answer(self):
        raise TimeoutError("Kafka is away")

    monkeypatch.setattr(FakeKafkaAdmin, "describe_cluster", no_answer)
    app2 = make_app(COLLECTOR_READY_MAX_AGE_MS=1000)
    client2 = app2.test_client()
    client2.post("/collect/1/1/event", json=EVENT)
    sent_by(app2)
    wait_until(lambda: "Kafka is away" in (client2.get("/readyz").get_json().get("reason") or ""),
               what="unready with the reason")
    response = client2.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unready"


def test_metrics_count_requests_by_route_and_events_by_outcome(client, sent):
    before = client.get("/metrics").get_data(as_text=True)
    for _ in range(3):
        client.post("/collect/1/1/event", json=EVENT)
    client.post("/collect/1/1/event", json={})
    client.post("/collect/evil-path/1/event", json=EVENT)
    sent()
    after = client.get("/metrics").get_data(as_text=True)

    def delta(name: str) -> float:
        return metric(after, name) - metric(before, name)

    route = 'route="/collect/<aid>/<tid>/event"'
    assert delta(f'collector_http_requests_total{{{route},status="204"}}') == 3
    assert delta(f'collector_http_requests_total{{{route},status="400"}}') == 1
    assert delta(f'collector_http_requests_total{{{route},status="404"}}') == 1
    assert delta('collector_events_total{outcome="accepted"}') == 3
    assert delta('collector_events_total{outcome="delivered"}') == 3
    assert delta("collector_delivery_seconds_count") == 3
    assert "evil-path" not in after  # no label holds what a caller sent


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


# -- with gunicorn, the real broker, and nginx ---------------------------------------------

@pytest.mark.integration
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


@pytest.mark.integration
def test_behind_a_real_nginx(nginx, broker, tmp_path):
    aid = new_account(broker)
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_PROXY_HOPS": "1"}).start()
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
        records = read_records(broker.servers, f"events.{aid}", count=2)
        ips = {r.key.decode(): json.loads(r.value)["context"]["ip"] for r in records}
        assert ips == {"plain": "127.0.0.2", "spoofed": "127.0.0.2"}
    finally:
        collector.stop()
