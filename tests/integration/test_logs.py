"""What the collector logs under gunicorn: a start without Kafka is no error, a warning that would
come every second comes once a minute, in words that agree with their numbers."""
from __future__ import annotations

import re
import signal

import pytest

from dev.broker import Broker, free_port
from tests.helpers import EVENT, Collector, keys_in, wait_until

pytestmark = pytest.mark.integration


def test_a_kafka_that_was_never_there_is_no_error_and_its_events_wait_for_it(tmp_path):
    port = free_port()  # nothing listens there yet
    collector = Collector(f"127.0.0.1:{port}", tmp_path).start()
    broker = None
    try:
        assert collector.post_event({**EVENT, "instance_id": "early"}, aid="3")[0] == 204
        waiting = "[WARNING] app.topics: 1 topic not checked ("
        wait_until(lambda: waiting in collector.log.read_text(), timeout=30, what="the topic check's warning")
        broker = Broker(port).start()  # Kafka comes for the first time
        assert keys_in(broker, "events.3", {"early"}) == {"early"}
    finally:
        collector.stop(signal.SIGTERM)
        if broker is not None:
            broker.stop()
    log = collector.log.read_text()
    assert re.findall(r"\[(?:ERROR|CRITICAL)\].*", log) == []
    warned = [line for line in log.splitlines() if waiting in line]  # it is tried again every second
    assert warned and all(" more like it in the last " in line for line in warned[1:]), "once a minute at most"
    assert not re.search(r"\b1 (events|topics|segments|accounts|vendors)\b", log)
