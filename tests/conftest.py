"""Fixtures: the app with a fake Kafka producer (unit tests); a real broker and gunicorn (integration)."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from kafka.future import Future

from app import create_app
from app.producer import Outbox, producer
from dev.broker import Broker, free_port, wait_for_port
from dev.events import read_records

ROOT = Path(__file__).resolve().parent.parent


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class FakeKafkaProducer:
    """kafka-python's producer interface, recording what is sent; ``fail_with`` fails deliveries."""

    def __init__(self, **configs: Any) -> None:
        self.configs = configs
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail_with: Exception | None = None
        self.closed = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        future = Future()
        if self.fail_with is not None:
            return future.failure(self.fail_with)
        self.sent.append((topic, key, value))  # type: ignore[arg-type]
        return future.success(None)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app({"TESTING": True, "COLLECTOR_KAFKA_FACTORY": FakeKafkaProducer})
    yield app
    producer.outbox(app).close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sent(app: Flask) -> Callable[[], list[dict[str, Any]]]:
    """The records the app handed to Kafka so far, once nothing is pending: topic, key, value."""

    def read() -> list[dict[str, Any]]:
        outbox: Outbox = producer.outbox(app)
        wait_until(lambda: outbox.pending == 0, what="the outbox to drain")
        fake = outbox._producer
        return [] if fake is None else [
            {"topic": t, "key": k.decode(), "value": json.loads(v)} for t, k, v in fake.sent
        ]

    return read


# -- integration: a real broker, a real gunicorn ------------------------------------------

@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    with Broker() as b:
        yield b


class Collector:
    """gunicorn serving wsgi:app as a subprocess, on a free loopback port."""

    def __init__(self, servers: str, env: dict[str, str] | None = None, workers: int = 2) -> None:
        self.port = free_port()
        self.log = ROOT / ".pytest_cache" / f"gunicorn-{self.port}.log"
        self.log.parent.mkdir(exist_ok=True)
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": servers, **(env or {})}
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Collector:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                 "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "wsgi:app"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, proc=self.proc)
        wait_until(lambda: len(self.worker_pids()) == self.workers, what=f"{self.workers} workers")
        return self

    def worker_pids(self) -> list[int]:
        """The pids of gunicorn's worker processes now."""
        assert self.proc is not None
        out = subprocess.run(["ps", "--ppid", str(self.proc.pid), "-o", "pid="],
                             capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def post_event(self, event: dict[str, Any], aid: str = "1", tid: str = "1",
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", f"/collect/{aid}/{tid}/event", json.dumps(event).encode(),
                            {"Content-Type": "application/json", **(headers or {})})


@pytest.fixture
def collector(broker: Broker) -> Iterator[Collector]:
    c = Collector(broker.servers).start()
    yield c
    c.stop()


@pytest.fixture
def read_topic(broker: Broker) -> Callable[..., list[Any]]:
    """Read ``count`` records of a topic from the broker, polling up to ``timeout``."""

    def read(topic: str, count: int | None = None, timeout: float = 20.0) -> list[Any]:
        return read_records(broker.servers, topic, count=count, timeout=timeout)

    return read
