"""The sender process (app/sidecar.py), as gunicorn's dirty worker runs it, on fake Kafka clients:
it sends what every worker appends while the workers never send, and it stops when gunicorn's
dirty arbiter above it is gone or its sender is stuck. (tests/integration/test_sender_process.py
kills the real one.)"""
from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from app import sidecar
from app.sidecar import SenderProcess
from tests.fakes import FAKE_KAFKA
from tests.helpers import numbers, post_numbered, settled, started, wait_until


def test_the_sender_process_sends_every_workers_events_and_the_workers_never_send(make_app, tmp_path, monkeypatch):
    workers = [started(make_app(COLLECTOR_SENDER="process")) for _ in range(2)]
    for n in range(6):
        client, _ = workers[n % 2]
        assert post_numbered(client, n).status_code == 204
    for name, value in {"COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"), "COLLECTOR_SENDER": "process",
                        "COLLECTOR_SPOOL_REPLAY_MS": "50"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(SenderProcess, "clients", FAKE_KAFKA)
    process = SenderProcess()
    process.init()
    try:
        settled(process.pipeline)
        assert sorted(numbers(process.pipeline.sender.producer)) == list(range(6))
        assert process.pipeline.sender.elected
        for _, pipeline in workers:  # the lock was free all along: they never ran for it
            assert not pipeline.sender.elected and pipeline.sender.producer is None
            wait_until(lambda p=pipeline: p.unready() is None, what="the worker sees the sender process run")
    finally:
        process.close()


@pytest.mark.parametrize(("parent", "beat_age", "why"), [
    (1, 0.0, "gunicorn's dirty arbiter is gone"),  # another parent than the one it started under
    (0, 60.0, "the sender has not run for 6"),  # stuck in a pass (60 s, or 61 by the time it looks)
])
def test_the_sender_process_stops_when_its_arbiter_is_gone_or_its_sender_is_stuck(monkeypatch, caplog, parent,
                                                                                  beat_age, why):
    process = SenderProcess()
    sender = SimpleNamespace(interval_s=0.05, beat=time.monotonic() - beat_age)
    process.pipeline = SimpleNamespace(supervisor=SimpleNamespace(stopping=threading.Event()),  # type: ignore[assignment]
                                       sender=sender, ready_s=10.0)
    process._parent = os.getppid() + parent
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(sidecar.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    process._watch()
    assert killed == [(os.getpid(), signal.SIGTERM)]  # the dirty worker's own way out, through close()
    assert why in caplog.text


def test_the_sender_process_serves_no_action():
    with pytest.raises(ValueError, match="serves no action"):
        SenderProcess()("flush")
