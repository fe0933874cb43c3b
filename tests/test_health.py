"""Supervised threads and readiness (app/health.py): a thread that dies is logged, reported and
started again; a worker is not ready before Kafka first answers."""
from __future__ import annotations

import ctypes
import logging
import socket
import threading

from app.health import Probe, Supervisor
from app.kafka_client import KAFKA
from tests.fakes import FakeKafkaAdmin, SilentBroker, kafka_resources, left_open
from tests.helpers import first_seen, numbers, post_numbered, settled, started, wait_until


def test_a_killed_sender_thread_is_logged_reported_and_started_again(make_app, caplog):
    client, pipeline = started(make_app(COLLECTOR_READY_MAX_AGE_MS=1000))
    assert post_numbered(client, 0).status_code == 204
    settled(pipeline)
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")
    thread = pipeline.supervisor.thread("sender")
    with caplog.at_level(logging.ERROR):
        kill = ctypes.pythonapi.PyThreadState_SetAsyncExc  # raises SystemExit inside that thread
        assert kill(ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit)) == 1
        answer = wait_until(lambda: (r := client.get("/readyz")).status_code == 503 and r.get_json(), what="unready")
    assert "the sender thread died (SystemExit()) and was restarted" in answer["reason"]
    assert "the sender thread died; it starts again" in caplog.text
    assert post_numbered(client, 1).status_code == 204
    settled(pipeline)
    assert first_seen(numbers(pipeline.sender.producer)) in ([0, 1], [1])  # 0 again only if its ack was not recorded
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready again")


def test_not_ready_before_kafka_first_answers(make_app, monkeypatch):
    def no_answer(self):
        raise TimeoutError("Kafka is away")

    monkeypatch.setattr(FakeKafkaAdmin, "describe_cluster", no_answer)
    client, pipeline = started(make_app(COLLECTOR_READY_MAX_AGE_MS=600_000))
    pipeline.sender.producer.mode = "hold"
    assert post_numbered(client, 0).status_code == 204
    answer = wait_until(lambda: "Kafka is away" in (client.get("/readyz").get_json().get("reason") or "")
                        and client.get("/readyz"), what="the probe's answer")
    assert answer.status_code == 503
    assert answer.get_json()["reason"].startswith("no answer from Kafka since this worker started")
    pipeline.sender.producer.release()  # the first acknowledgement
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")


def test_a_thread_that_dies_runs_again_and_its_death_shows_for_a_while(caplog):
    supervisor = Supervisor(visible_s=0.5)
    runs: list[int] = []
    release = threading.Event()

    def work() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("boom")
        release.wait()

    with caplog.at_level(logging.ERROR, logger="app.health"):
        supervisor.start("work", work)
        try:
            problem = wait_until(supervisor.problem, what="the death reported")
            assert problem == "the work thread died (RuntimeError('boom')) and was restarted"
            wait_until(lambda: len(runs) == 2, what="the thread started again")
            wait_until(lambda: supervisor.problem() is None, what="the death out of view")
            assert supervisor.thread("work").is_alive()
        finally:
            release.set()
            supervisor.stop(5)
    assert "the work thread died; it starts again" in caplog.text
    assert not supervisor.thread("work").is_alive()


def test_a_thread_that_ended_is_a_problem_until_the_supervisor_stops():
    supervisor = Supervisor(visible_s=0.5)
    supervisor.start("probe", lambda: None)  # returns at once: not run again
    assert wait_until(supervisor.problem, what="the end noticed") == "the probe thread is not running"
    supervisor.stop(1)
    assert supervisor.problem() is None


def test_probes_a_hung_kafka_never_answers_leave_nothing_open():
    with SilentBroker() as silent:
        before = kafka_resources()
        probe = Probe(KAFKA.admin, silent.configs(), ready_s=1.0)
        for _ in range(10):
            probe.ask()
        assert probe.problem.startswith('Kafka does not answer: KafkaTimeoutError("Unable to bootstrap')
        assert (probe.heard, probe.outages) == (0.0, 0)  # not away: it takes connections
        assert left_open(before) == (0, 0)  # it was 3 descriptors and a thread each


def test_a_thread_that_keeps_dying_starts_again_later_each_time_until_it_ran_fine_for_a_while(caplog):
    now = [0.0]
    waits: list[float] = []

    def wait(seconds: float) -> bool:  # the supervisor's pause before a restart, on a clock of our own
        waits.append(seconds)
        now[0] += seconds
        return len(waits) == 12  # then it is told to stop

    def work() -> None:
        if len(waits) == 8:
            now[0] += Supervisor.HEALTHY_S  # this run went well for a while before it died
        raise RuntimeError("boom")

    supervisor = Supervisor(visible_s=1.0, clock=lambda: now[0], wait=wait)
    with caplog.at_level(logging.ERROR, logger="app.health"):
        supervisor.start("work", work)
        supervisor.thread("work").join(10)
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 0.5, 1, 2, 4]
    assert "the work thread died; it starts again in 30.0 s" in caplog.text


def test_stopping_ends_a_thread_that_waits_to_start_again():
    supervisor = Supervisor(visible_s=1.0)
    supervisor.RESTART_S = 600.0  # its wait before a restart outlasts the stop's

    def work() -> None:
        raise RuntimeError("boom")

    supervisor.start("work", work)
    wait_until(supervisor.problem, what="the death")
    supervisor.stop(5)
    assert not supervisor.thread("work").is_alive()


def test_only_a_kafka_that_answered_before_can_go_away():
    """A start without Kafka is no outage (the sender would replace a producer that never sent,
    and say so at ERROR); Kafka that answered and then refuses connections is one."""
    answers = {"now": False}

    class Admin(FakeKafkaAdmin):
        def describe_cluster(self) -> dict[str, object]:
            if not answers["now"]:
                raise ConnectionRefusedError("no broker")
            return {}

    with socket.socket() as closed:  # a port nothing listens on: every connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    probe = Probe(Admin, {"bootstrap_servers": [f"127.0.0.1:{port}"]}, ready_s=10.0)
    for _ in range(3):
        probe.ask()
    assert (probe.heard, probe.outages) == (0.0, 0)
    answers["now"] = True
    probe.ask()
    assert probe.heard > 0
    answers["now"] = False
    probe.ask()
    probe.ask()
    assert probe.outages == 1
