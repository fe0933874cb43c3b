"""The cost of one request inside the app, without gunicorn, wrk or the kernel's share.

``python bench/cost.py collector|reference [REQUESTS]`` starts the embedded broker, calls the
app's WSGI entry REQUESTS times (default 5000) with the benchmark's event, waits until
Kafka has acknowledged every event, and prints the process's CPU per request (all threads:
kafka-python's included). ``python bench/cost.py kafka [RECORDS]`` measures kafka-python
alone: the collector's producer settings, one such event's record per send, until acknowledged.
CPU time on a shared machine moves from run to run; instruction counts do not. For those,
run it under callgrind at two request counts and divide the difference (start-up cancels out)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/cost.py collector 300
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/cost.py collector 1300
    # ("Collected" at 1300 - "Collected" at 300) / 1000 = instructions per request
"""
from __future__ import annotations

import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="cost-metrics-"))

from dev.broker import Broker  # noqa: E402


def environ(i: int) -> dict[str, Any]:
    """A WSGI request as gunicorn makes it: the benchmark's event, its own instance_id."""
    body = (b'{"action":"view","object":"form","vendor":"Vendor A","product":"Product 1",'
            b'"instance_id":"p-%d"}' % i)
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/collect/1/1/event", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "wrk", "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        "wsgi.input_terminated": True,
    }


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    if not status.startswith("204"):
        raise SystemExit(f"the app answered {status}")
    return None


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "collector"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    with Broker() as broker:
        broker.create_topic("events.1")
        os.environ.update(KAFKA_BOOTSTRAP_SERVERS=broker.servers, COLLECTOR_SPOOL_DIR=tempfile.mkdtemp(),
                          COLLECTOR_MAX_PENDING=str(10 * count + 1000), COLLECTOR_SENDER="host")  # in this process
        if target == "kafka":
            return kafka_cost(count)
        pipeline = None
        if target == "collector":
            from app import create_app
            from app.delivery import get_pipeline

            app = create_app()
            pipeline = get_pipeline(app)
            pipeline.start()
        else:
            from bench.reference import app
        requests = [environ(i) for i in range(count)]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        before = usage.ru_utime + usage.ru_stime
        for env in requests:
            for _ in app(env, start_response):
                pass
        done = pipeline.sender.passes + 1 if pipeline is not None else 0  # a pass begun after the last request
        while pipeline is not None and (pipeline.sender.passes <= done or pipeline.sender.backlog):
            time.sleep(0.001)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(f"{target}: {1e6 * (usage.ru_utime + usage.ru_stime - before) / count:.0f} µs CPU per request")
        if pipeline is not None:
            pipeline.close()


def kafka_cost(count: int) -> None:
    """CPU per record of kafka-python's send and delivery, with the collector's settings."""
    from kafka import KafkaProducer

    from app.config import Settings
    from app.kafka_client import producer_configs

    settings = Settings.from_env()
    kafka = KafkaProducer(**producer_configs(settings))
    interval = settings.send_interval_ms / 1000
    burst = max(1, round(1000 * interval))  # a worker taking 1,000 events/s, handed over each interval
    value = b"x" * 330  # the size of the benchmark event's record
    kafka.send("events.1", key=b"warm", value=value).get(timeout=10)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    for i in range(count):
        kafka.send("events.1", key=b"p-%d" % i, value=value).add_callback(lambda metadata: None)
        if i % burst == burst - 1:
            time.sleep(interval)
    kafka.flush()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"kafka-python: {1e6 * (usage.ru_utime + usage.ru_stime - before) / count:.0f} µs CPU per record")
    kafka.close()


if __name__ == "__main__":
    main()
