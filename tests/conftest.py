"""Fixtures: the app with a fake Kafka producer (unit tests); a real broker and gunicorn (integration)."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from kafka.errors import IllegalStateError, KafkaTimeoutError
from kafka.future import Future

from app import create_app
from app.config import Settings
from app.delivery import Pipeline, get_pipeline
from app.kafka_client import Clients
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
    """kafka-python's producer interface, recording what it is sent.

    ``mode``: "ok" acknowledges at once, "fail" fails each delivery with ``error``, "hold"
    never answers (a stalled broker); ``raise_on_send`` makes ``send`` itself raise;
    ``refuse`` maps a topic to the error its deliveries fail with, whatever the mode.
    """

    def __init__(self, **configs: Any) -> None:
        self.configs = configs
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.mode = "ok"
        self.error: Exception = KafkaTimeoutError("Batch expired")
        self.raise_on_send: Exception | None = None
        self.held: list[tuple[Future, tuple[str, bytes, bytes]]] = []
        self.refuse: dict[str, Exception] = {}
        self.closed = False

    @property
    def _metadata(self) -> FakeMetadata:
        return FakeMetadata()

    @property
    def _sender(self) -> FakeMetadata:
        return FakeMetadata()

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        if self.closed:
            raise IllegalStateError("KafkaProducer already closed!")
        if self.raise_on_send is not None:
            raise self.raise_on_send
        future = Future()
        if topic in self.refuse:
            return future.failure(self.refuse[topic])
        if self.mode == "fail":
            return future.failure(self.error)
        if self.mode == "hold":
            self.held.append((future, (topic, key, value)))  # type: ignore[arg-type]
            return future
        self.sent.append((topic, key, value))  # type: ignore[arg-type]
        return future.success(None)

    def release(self) -> None:
        """The stalled broker answers: acknowledge what it held, from now on at once."""
        self.mode = "ok"
        held, self.held = self.held, []
        for future, record in held:
            self.sent.append(record)
            future.success(None)

    def fail_held(self) -> None:
        """The stalled broker fails what it held, in order, and from now on fails at once."""
        self.mode = "fail"
        held, self.held = self.held, []
        for future, _ in held:
            future.failure(self.error)

    def flush(self, timeout: float | None = None) -> None:
        if self.held:
            raise KafkaTimeoutError("flush timed out")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class FakeMetadata:
    """kafka-python's cluster metadata (and the sender's part in it), as the collector uses them:
    every topic has a partition, but those in ``FakeKafkaAdmin.missing`` until they are created."""

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        missing = topic in FakeKafkaAdmin.missing or FakeKafkaAdmin.only_created and topic not in FakeKafkaAdmin.topics
        return None if missing else {0}

    def add_topic(self, topic: str) -> None:
        pass

    def request_update(self) -> None:
        pass

    def wakeup(self) -> None:
        pass


class FakeKafkaAdmin:
    """kafka-python's admin client, as far as the collector uses it: topics it was asked to create."""

    topics: dict[str, tuple[int, int]] = {}
    missing: set[str] = set()  # topics the cluster does not have (the producer's metadata lacks them)
    only_created = False  # True: the cluster has only the topics created through this admin

    def __init__(self, **configs: Any) -> None:
        self.configs = configs

    def create_topics(self, new_topics: list[Any], raise_errors: bool = True) -> dict[str, Any]:
        answers = []
        for t in new_topics:
            exists = t.name in self.topics
            self.topics.setdefault(t.name, (t.num_partitions, t.replication_factor))
            self.missing.discard(t.name)
            answers.append({"name": t.name, "error_code": 36 if exists else 0, "error_message": None})
        return {"topics": answers}

    def describe_cluster(self) -> dict[str, Any]:
        return {"cluster_id": "fake", "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": 9092}]}

    def close(self) -> None:
        pass


def records(fake: FakeKafkaProducer) -> list[dict[str, Any]]:
    """What a fake producer was sent: topic, key and the decoded value."""
    return [{"topic": t, "key": k.decode(), "value": json.loads(v)} for t, k, v in fake.sent]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps with a fake Kafka producer and a spool under ``tmp_path``; closes them after."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        env = {"COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"), "COLLECTOR_SPOOL_REPLAY_MS": "50",
               "COLLECTOR_SENDER": "worker", **{k: str(v) for k, v in config.items()}}
        app = create_app(Settings.from_env(env), Clients(FakeKafkaProducer, FakeKafkaAdmin))
        app.testing = True
        apps.append(app)
        return app

    FakeKafkaAdmin.topics, FakeKafkaAdmin.missing, FakeKafkaAdmin.only_created = {}, set(), False
    yield make
    for app in apps:
        get_pipeline(app).close()


@pytest.fixture
def unwritable_spool(tmp_path: Path) -> str:
    """A spool directory that cannot be made, even by root: its parent is a file."""
    parent = tmp_path / "a-file"
    parent.write_text("")
    return str(parent / "spool")


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def settled(pipeline: Pipeline) -> None:
    """Wait for a pass of the sender that began after now and left nothing unacknowledged."""
    done = pipeline.sender.passes + 1  # the pass under way may have begun before now: the next one
    wait_until(lambda: pipeline.sender.passes > done and not pipeline.sender.backlog and not pipeline.sender.held,
               what="every event acknowledged")


def sent_by(app: Flask) -> list[dict[str, Any]]:
    """The records ``app`` handed to Kafka so far, once nothing is pending: topic, key, value."""
    pipeline: Pipeline = get_pipeline(app)
    if pipeline.unready() == "not started":
        return []
    settled(pipeline)
    return records(pipeline.sender.producer)


@pytest.fixture
def sent(app: Flask) -> Callable[[], list[dict[str, Any]]]:
    """``sent_by`` the ``app`` fixture."""
    return lambda: sent_by(app)


# -- integration: a real broker, a real gunicorn ------------------------------------------

@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    with Broker() as b:
        yield b


class Collector:
    """gunicorn serving wsgi:app as a subprocess, on a free loopback port."""

    def __init__(self, servers: str, workdir: Path, env: dict[str, str] | None = None, workers: int = 2) -> None:
        """Serve with the spool in ``workdir/spool`` (unless ``env`` says otherwise), the log beside it."""
        self.port = free_port()
        self.log = workdir / f"gunicorn-{self.port}.log"
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": servers,
                    "COLLECTOR_SPOOL_DIR": str(workdir / "spool"), **(env or {})}
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

    def slowest_request_ms(self) -> int:
        """The longest time gunicorn's access log shows for a collect request."""
        times = re.findall(r'"POST /collect/[^"]*" \d{3} \S+ (\d+)ms ', self.log.read_text())
        return max(map(int, times), default=0)

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

    def post_many(self, aid: str, keys: Iterable[str], threads: int = 4) -> dict[str, tuple[int, float]]:
        """Post one event per key (its instance_id), a few at a time: key -> (status, seconds).

        A request that fails at the socket (refused, reset, timed out) has status 0.
        """
        def post(key: str) -> tuple[str, tuple[int, float]]:
            began = time.monotonic()
            try:
                status = self.post_event({"action": "view", "object": "o", "vendor": "v", "product": "p",
                                          "instance_id": key}, aid=aid)[0]
            except OSError:
                status = 0
            return key, (status, time.monotonic() - began)

        with ThreadPoolExecutor(threads) as pool:
            return dict(pool.map(post, keys))


@pytest.fixture
def collector(broker: Broker, tmp_path: Path) -> Iterator[Collector]:
    c = Collector(broker.servers, tmp_path).start()
    yield c
    c.stop()


@pytest.fixture
def read_topic(broker: Broker) -> Callable[..., list[Any]]:
    """Read ``count`` records of a topic from the broker, polling up to ``timeout``."""

    def read(topic: str, count: int | None = None, timeout: float = 20.0) -> list[Any]:
        return read_records(broker.servers, topic, count=count, timeout=timeout)

    return read
