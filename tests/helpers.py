"""What more than one test file uses: waiting, events, the records a fake producer got, a
gunicorn collector as a subprocess, reading a real broker back."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import yaml
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.config import get_settings
from app.delivery import Pipeline, get_pipeline
from app.reader import records_in
from app.segment import Record, Segment
from dev.broker import Broker, free_port, wait_for_port
from dev.events import read_records
from tests.fakes import FakeKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

#: A valid event; tests change or add fields to it.
EVENT = {"action": "view", "object": "form", "vendor": "V", "product": "P", "instance_id": "i1"}
#: The fields every event must have.
REQUIRED = ("action", "object", "vendor", "product", "instance_id")
#: Short Kafka timeouts so that failures show within an integration test's time.
FAST = {"COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS": "4000", "COLLECTOR_KAFKA_MAX_BLOCK_MS": "500",
        "COLLECTOR_SPOOL_REPLAY_MS": "200"}
#: A registry file's one account, 1, with one tracker, 1.
ONE_ACCOUNT = '[accounts.1]\ntrackers = ["1"]\n'
#: That account, and two vendors: one with two products, one that takes any product.
VENDORS = ONE_ACCOUNT + '''
[vendors."Vendor A"]
products = ["Product 1", "Chat"]

[vendors."Vendor B"]
products = []
'''


# -- waiting ---------------------------------------------------------------------------------

def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def observe(look: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """Call ``look`` until ``done`` says its answer will do or ``timeout`` passes; the last answer.

    The caller asserts on that answer, so a failure says what was seen, not only that time ran out.
    """
    seen: list[T] = []

    def check() -> bool:
        seen[:] = [look()]
        return done(seen[0])

    with contextlib.suppress(AssertionError):
        wait_until(check, timeout=timeout)
    return seen[0]


# -- events ----------------------------------------------------------------------------------

def numbered(n: int, instance: str | None = None, **extra: Any) -> dict[str, Any]:
    """Event number ``n`` (in its properties, as ``n``), its instance_id ``instance`` or ``i<n>``."""
    return {**EVENT, "instance_id": instance or f"i{n}", "n": n, **extra}


def vendor_event(vendor: str, product: str, **extra: Any) -> dict[str, Any]:
    """An event of ``vendor``'s ``product``."""
    return {**EVENT, "vendor": vendor, "product": product, **extra}


def replace_file(path: Path, text: str) -> None:
    """Replace the file atomically, as the README asks of a registry."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def metric(text: str, name: str) -> float:
    """One sample's value from Prometheus' text format (0 when absent)."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def make(*args: str) -> list[str]:
    """The command line of ``make ARGS`` on this test run's virtualenv, which it never installs into
    (without "Entering directory" lines, which a ``make -C DIR test`` above passes down in MAKEFLAGS)."""
    return ["make", "-s", "--no-print-directory", f"VENV={sys.prefix}", "-o", f"{sys.prefix}/.installed", *args]


def environment(**changes: str) -> dict[str, str]:
    """This process's environment without Kafka's or the collector's settings, with ``changes``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "KAFKA_", "BROKER_"))}
    return {**kept, **changes}


class MakeRun:
    """``make run`` as a user types it, on free ports (its broker's and gunicorn's) and a spool in ``workdir``."""

    def __init__(self, workdir: Path, **env: str) -> None:
        self.port, self.broker_port = free_port(), free_port()
        self.log = workdir / f"make-run-{self.port}.log"
        self.env = environment(BROKER_PORT=str(self.broker_port), COLLECTOR_BIND=f"127.0.0.1:{self.port}",
                               COLLECTOR_SPOOL_DIR=str(workdir / "spool"), **env)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MakeRun:
        with open(self.log, "ab") as log:  # its own session: the broker and gunicorn are stopped with it
            self.proc = subprocess.Popen(make("run"), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for_port(self.port, timeout=60, proc=self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> int:
        """SIGTERM to make and everything it started, as Ctrl-C would; SIGKILL after a minute."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


# -- the log on disk ----------------------------------------------------------------------------

def log_record(i: int, topic: str = "events.1") -> Record:
    """Record number ``i`` as the log holds it (a key with a newline in it, a small JSON value)."""
    return Record(topic, f"key\n{i}".encode(), b'{"n": %d}' % i, 1_700_000_000.5 + i)


def read_all(segment: Segment, offset: int | None = None) -> list[Record]:
    """The records of the whole writes of ``segment`` from ``offset`` (default: its first)."""
    return list(records_in(segment, offset))


# -- an app against fake Kafka clients ----------------------------------------------------------

def records(fake: FakeKafkaProducer) -> list[dict[str, Any]]:
    """What a fake producer was sent: topic, key and the decoded value."""
    return [{"topic": t, "key": k.decode(), "value": json.loads(v)} for t, k, v in fake.sent]


def settled(pipeline: Pipeline) -> None:
    """Wait for a pass of the sender that began after now and left nothing unacknowledged."""
    done = pipeline.sender.passes + 1  # the pass under way may have begun before now: the next one
    wait_until(lambda: pipeline.sender.passes > done and not pipeline.sender.backlog and not pipeline.sender.held,
               what="every event acknowledged")


def sent_by(app: Flask, rejects: bool = False) -> list[dict[str, Any]]:
    """The event records ``app`` handed to Kafka so far, once nothing is pending: topic, key,
    value; with ``rejects``, those of the rejects topic instead."""
    pipeline: Pipeline = get_pipeline(app)
    if pipeline.unready() == "not started":
        return []
    settled(pipeline)
    topic = get_settings(app).rejects_topic
    return [r for r in records(pipeline.sender.producer) if (r["topic"] == topic) == rejects]


def started(app: Flask) -> tuple[FlaskClient, Pipeline]:
    """The app's test client and its pipeline, started (its producer is a fake)."""
    pipeline = get_pipeline(app)
    pipeline.start()
    wait_until(lambda: pipeline.sender.beat, what="the sender's first pass")
    return app.test_client(), pipeline


def post_numbered(client: FlaskClient, n: int, aid: str = "1", instance: str | None = None) -> TestResponse:
    """Post event number ``n`` to account ``aid``; its instance_id ``instance`` or one of three."""
    return client.post(f"/collect/{aid}/1/event", json=numbered(n, instance or f"i{n % 3}"))


def numbers(fake: FakeKafkaProducer, topic: str = "events.1") -> list[int]:
    """The numbers of the events a fake producer was sent to ``topic``, in the order sent."""
    return [r["value"]["properties"]["n"] for r in records(fake) if r["topic"] == topic]


def first_seen(ns: Iterable[int]) -> list[int]:
    """``ns`` without repeats (delivery is at least once), each where it first came."""
    seen: list[int] = []
    for n in ns:
        if n not in seen:
            seen.append(n)
    return seen


def refused(response: TestResponse, status: int, errors: dict[str, list[str]] | None,
            sent: Callable[[], list[dict[str, Any]]]) -> None:
    """``response`` is a JSON error of ``status`` with these ``errors`` (None: no field named),
    and nothing reached Kafka."""
    assert response.status_code == status
    answer = response.get_json()
    assert answer["code"] == status and answer["message"]
    assert answer.get("errors") == errors
    assert sent() == []


# -- a real broker and gunicorn --------------------------------------------------------------

def account_id() -> str:
    """An account id no other test uses, so each test reads its own topic."""
    return str(uuid.uuid4().int % 10**12 + 1)


def new_account(broker: Broker) -> str:
    """A fresh account id, its topic created (see ``Broker.create_topic``)."""
    aid = account_id()
    broker.create_topic(f"events.{aid}")
    return aid


def keys_in(broker: Broker, topic: str, expected: set[str], timeout: float = 60) -> set[str]:
    """The record keys of ``topic``, read until all of ``expected`` are there or ``timeout`` passes."""
    found: set[str] = set()

    def look() -> set[str]:
        found.update(r.key.decode() for r in read_records(broker.servers, topic, timeout=5))
        return found

    return observe(look, lambda keys: expected <= keys, timeout)


def accepted(results: dict[str, tuple[int, float]]) -> set[str]:
    """The keys of the events answered 204."""
    return {key for key, (status, _) in results.items() if status == 204}


def raw_http(port: int, request: bytes, timeout: float = 15) -> bytes:
    """Send bytes as they are, read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def children(pid: int) -> list[tuple[int, str]]:
    """The child processes of ``pid`` now, with their titles (gunicorn names them with setproctitle)."""
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [(int(line.split(None, 1)[0]), line.split(None, 1)[-1]) for line in out.splitlines() if line.strip()]


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
        """The pids of gunicorn's web worker processes now (not its dirty arbiter)."""
        assert self.proc is not None
        return [pid for pid, title in children(self.proc.pid) if "dirty-arbiter" not in title]

    def pids(self) -> list[int]:
        """The master, then every process below it: web workers, dirty arbiter, sender process."""
        assert self.proc is not None
        found, todo = [self.proc.pid], [self.proc.pid]
        while todo:
            below = [pid for pid, _ in children(todo.pop())]
            found += below
            todo += below
        return found

    def sender_pids(self) -> list[int]:
        """The pid of the sender process (gunicorn's dirty worker), if it runs now."""
        assert self.proc is not None
        return [pid for arbiter, title in children(self.proc.pid) if "dirty-arbiter" in title
                for pid, title in children(arbiter) if "dirty-worker" in title]

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


# -- deploy/: the alert rules and the dashboard -------------------------------------------

RULES = ROOT / "deploy" / "prometheus" / "collector.rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "collector.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "collector.json"

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "offset", "bool", "inf", "nan"}


def alerting_rules() -> dict[str, str]:
    """The alerts of collector.rules.yml: name -> expression."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"] if "alert" in rule}


def dashboard_exprs() -> list[str]:
    """The queries of the dashboard's panels."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values may hold anything
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr)  # not followed by "(": no function
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def selectors(expr: str) -> list[tuple[str, str, str, str]]:
    """The label matchers on the collector's metrics in ``expr``: (metric, label, operator, value)."""
    found = []
    for name, matchers in re.findall(r"\b(collector_[a-z_]+)\{([^}]*)\}", expr):
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', matchers):
            found.append((name, label, op, value))
    return found
