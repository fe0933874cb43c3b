"""The sender process (COLLECTOR_SENDER=process, the default) under gunicorn, from outside: killed
with SIGKILL, its death is logged and shows in /readyz, gunicorn starts another, and every event
answered 204 before, during and after reaches Kafka; a server killed whole leaves no sender behind.
Nothing here asserts a time, only deadlines to wait for what must happen.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers import FAST, Collector, accepted, keys_in, new_account, wait_until

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_sender_process_is_logged_seen_in_readiness_and_replaced_and_nothing_is_lost(broker, tmp_path):
    aid = new_account(broker)
    collector = Collector(broker.servers, tmp_path, {**FAST, "COLLECTOR_READY_MAX_AGE_MS": "2000"}).start()
    try:
        [sender] = wait_until(collector.sender_pids, what="the sender process")
        wait_until(lambda: collector.request("GET", "/readyz")[0] == 200, what="ready")
        before = accepted(collector.post_many(aid, [f"before-{n}" for n in range(30)]))
        os.kill(sender, signal.SIGKILL)
        during = accepted(collector.post_many(aid, [f"during-{n}" for n in range(30)]))  # the workers go on
        why = wait_until(lambda: (answer := collector.request("GET", "/readyz"))[0] == 503 and answer[2],
                         timeout=20, what="/readyz to say so")
        assert f"the host's sender (pid {sender}) died".encode() in why
        [replacement] = wait_until(collector.sender_pids, timeout=20, what="a new sender process")
        assert replacement != sender
        assert f"Dirty worker (pid:{sender}) killed by signal 9" in collector.log.read_text()
        after = accepted(collector.post_many(aid, [f"after-{n}" for n in range(30)]))
        assert len(before) == len(during) == len(after) == 30
        everything = before | during | after
        assert keys_in(broker, f"events.{aid}", everything) >= everything
        wait_until(lambda: collector.request("GET", "/readyz")[0] == 200, timeout=20, what="ready again")
    finally:
        collector.stop()


def test_a_server_killed_whole_leaves_no_sender_process_behind(broker, tmp_path):
    collector = Collector(broker.servers, tmp_path, FAST).start()
    [sender] = wait_until(collector.sender_pids, what="the sender process")
    assert collector.proc is not None
    arbiter = int(Path(f"/proc/{sender}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
    os.kill(arbiter, signal.SIGKILL)  # gunicorn's dirty arbiter and its master, as kill -9 would
    collector.stop(signal.SIGKILL)
    wait_until(lambda: not alive(sender), timeout=30, what="the orphaned sender process to stop")


def test_a_hup_renews_the_sender_process_which_resigns_first_and_nothing_is_lost(broker, tmp_path):
    aid = new_account(broker)
    collector = Collector(broker.servers, tmp_path, {**FAST, "COLLECTOR_SHUTDOWN_FLUSH_MS": "1000"}).start()
    try:
        [sender] = wait_until(collector.sender_pids, what="the sender process")
        before = accepted(collector.post_many(aid, [f"before-{n}" for n in range(20)]))
        assert collector.proc is not None
        collector.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: [p for p in collector.sender_pids() if p != sender], timeout=30, what="a new sender")
        after = accepted(collector.post_many(aid, [f"after-{n}" for n in range(20)]))
        assert len(before) == len(after) == 20
        assert keys_in(broker, f"events.{aid}", before | after) >= before | after
        assert "died" not in collector.log.read_text()  # it resigned: no death to report
    finally:
        collector.stop()
