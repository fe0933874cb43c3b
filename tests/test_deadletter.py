"""Dead letters (app/deadletter.py): kept with their reason, sent again, the undelivered kept; never
lost to a resend, a short write or a kill, and bounded."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime

import pytest

from app import deadletter, metrics
from app.segment import Record
from tests.helpers import ROOT, metric


def test_dead_letters_are_sent_again_and_only_the_undelivered_kept(tmp_path):
    spool = tmp_path / "spool"
    records_ = [Record("events.1", b"k%d" % n, json.dumps({"event_id": f"e{n}", "n": n}).encode()) for n in range(4)]
    deadletter.write(spool, records_, "InvalidRecordError()")
    assert deadletter.resend(spool, lambda rs: [json.loads(r.value)["n"] % 2 == 0 for r in rs]) == (2, 2)
    kept = [json.loads(line) for line in (spool / "dead-letter" / "events.1.jsonl").read_text().splitlines()]
    assert [d["event_id"] for d in kept] == ["e1", "e3"]
    assert deadletter.resend(spool, lambda rs: [True] * len(rs)) == (2, 0)
    assert not list((spool / "dead-letter").iterdir())


def test_buried_events_are_kept_with_their_reason_and_counted(tmp_path):
    spool = tmp_path / "spool"
    records_ = [Record("events.9", b"k%d" % n, json.dumps({"event_id": f"e{n}", "n": n}).encode()) for n in range(3)]
    assert deadletter.bury(spool, records_, "InvalidRecordError()")
    assert deadletter.bury(spool, records_[:1], "failing for 300 s")
    assert deadletter.count(spool) == 4
    letters = [json.loads(line) for line in (spool / "dead-letter" / "events.9.jsonl").read_text().splitlines()]
    assert [(d["event_id"], d["topic"], d["key"], d["value"], d["reason"]) for d in letters] == [
        *[(f"e{n}", "events.9", f"k{n}", {"event_id": f"e{n}", "n": n}, "InvalidRecordError()") for n in range(3)],
        ("e0", "events.9", "k0", {"event_id": "e0", "n": 0}, "failing for 300 s")]
    assert all(datetime.fromisoformat(d["dead_at"]).tzinfo is not None for d in letters)


def test_events_that_cannot_be_buried_say_so_and_are_not_counted(unwritable_spool, caplog):
    record = Record("events.9", b"k", b'{"event_id": "e"}')
    assert not deadletter.bury(unwritable_spool, [record], "InvalidRecordError()")
    assert deadletter.count(unwritable_spool) == 0
    assert "dead letters not written" in caplog.text


def letters(topic: str, numbers: range, size: int = 0) -> list[Record]:
    """Records of ``topic`` whose events are numbered (``e<n>``), each with ``size`` bytes of padding."""
    return [Record(topic, b"k%d" % n, json.dumps({"event_id": f"e{n}", "n": n, "pad": "x" * size}).encode())
            for n in numbers]


def on_disk(spool, topic: str = "events.1") -> list[str]:
    """The event ids in a dead-letter file, each line read as JSON (a torn one fails the test)."""
    lines = (spool / "dead-letter" / f"{topic}.jsonl").read_text().splitlines()
    return [json.loads(line)["event_id"] for line in lines]


def sent_ids(records_: list[Record]) -> list[str]:
    return [json.loads(r.value)["event_id"] for r in records_]


@pytest.mark.parametrize("kept", [False, True], ids=["all-delivered-file-deleted", "some-kept-file-replaced"])
def test_a_worker_that_waited_on_a_resend_writes_into_the_file_that_stays(tmp_path, monkeypatch, kept):
    spool = tmp_path / "spool"
    deadletter.write(spool, letters("events.1", range(3)), "old")
    real_flock, waiting, buried = fcntl.flock, threading.Event(), []
    worker = threading.Thread(target=lambda: buried.append(deadletter.bury(spool, letters("events.1", [9]), "new")))

    def flock(fd: int, operation: int) -> None:
        if threading.current_thread() is worker:
            waiting.set()  # it opened the file, and asks for the lock the resend holds
        real_flock(fd, operation)

    def send(records_: list[Record]) -> list[bool]:
        worker.start()
        assert waiting.wait(10)
        return [not (kept and n == 1) for n in range(len(records_))]  # e1 fails again when kept

    monkeypatch.setattr(deadletter.fcntl, "flock", flock)
    assert deadletter.resend(spool, send) == ((2, 1) if kept else (3, 0))
    worker.join(10)
    assert buried == [True]
    assert on_disk(spool) == (["e1", "e9"] if kept else ["e9"])


def test_a_killed_resend_loses_no_letter_and_its_leftover_is_not_a_letter(tmp_path):
    spool = tmp_path / "spool"
    deadletter.write(spool, letters("events.1", range(4)), "old")
    calls = tmp_path / "calls"
    script = ("import os, signal, sys; from pathlib import Path; from app import deadletter\n"
              "deadletter.BATCH = 2\n"
              "def send(records):\n"
              "    if Path(sys.argv[2]).exists(): os.kill(os.getpid(), signal.SIGKILL)\n"
              "    Path(sys.argv[2]).touch(); return [False, True]\n"
              "deadletter.resend(sys.argv[1], send)\n")
    killed = subprocess.run([sys.executable, "-c", script, str(spool), str(calls)], cwd=ROOT, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert (spool / "dead-letter" / ".events.1.jsonl.tmp").read_bytes()  # the first batch's letter kept, there
    assert deadletter.count(spool) == 4
    sent: list[str] = []
    assert deadletter.resend(spool, lambda rs: [not sent.extend(sent_ids(rs))] * len(rs)) == (4, 0)
    assert sent == ["e0", "e1", "e2", "e3"]
    assert list((spool / "dead-letter").iterdir()) == []
    assert deadletter.held_bytes(spool) == 0


def test_letters_go_in_bounded_batches_and_those_kept_stay_in_order(tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    deadletter.write(spool, letters("events.1", range(5)), "old")
    monkeypatch.setattr(deadletter, "BATCH", 2)
    batches: list[list[str]] = []

    def send(records_: list[Record]) -> list[bool]:
        batches.append(sent_ids(records_))
        return [json.loads(r.value)["n"] % 2 == 0 for r in records_]

    assert deadletter.resend(spool, send) == (3, 2)
    assert batches == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert on_disk(spool) == ["e1", "e3"]


def test_short_writes_are_written_on_until_the_letters_are_whole(tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    real_write = os.write
    monkeypatch.setattr(deadletter.os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    assert deadletter.bury(spool, letters("events.1", range(3)), "refused")
    assert on_disk(spool) == ["e0", "e1", "e2"]


FULL_DISK = """
import resource, signal, sys, os
from app import deadletter
from tests.test_deadletter import letters
spool = sys.argv[1]
deadletter.write(spool, letters("events.1", [0]), "first")
size = os.path.getsize(os.path.join(spool, "dead-letter", "events.1.jsonl"))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 150, size + 150))  # a disk with 150 bytes left
print(deadletter.bury(spool, letters("events.1", range(1, 6)), "refused"))
"""


def test_a_write_the_disk_cuts_short_is_cut_off_and_the_events_stay_in_the_log(tmp_path):
    spool = tmp_path / "spool"
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(spool)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    assert "dead letters not written" in out.stderr and "5 events kept in the log" in out.stderr
    assert on_disk(spool) == ["e0"]  # nothing torn after it
    assert deadletter.bury(spool, letters("events.1", [6]), "later")
    assert on_disk(spool) == ["e0", "e6"]


def test_a_torn_line_an_older_version_left_is_skipped_and_logged_and_the_rest_delivered(tmp_path, caplog):
    spool = tmp_path / "spool"
    lines = [deadletter.line(r, "refused") for r in letters("events.1", range(5))]
    folder = spool / "dead-letter"
    folder.mkdir(parents=True)
    # e1 torn by a short write and e2 appended right after it; e4 torn at the end.
    (folder / "events.1.jsonl").write_bytes(lines[0] + lines[1][:40] + lines[2] + lines[3] + lines[4][:30])
    assert deadletter.count(spool) == 3
    assert caplog.text.count("a torn dead letter skipped") == 2
    sent: list[str] = []
    assert deadletter.resend(spool, lambda rs: [not sent.extend(sent_ids(rs))] * len(rs)) == (3, 0)
    assert sent == ["e0", "e2", "e3"]


def test_past_their_maximum_dead_letters_are_refused_and_the_events_stay_in_the_log(tmp_path, monkeypatch, caplog):
    spool = tmp_path / "spool"
    most = 1024 * 1024
    for n in range(3):
        assert deadletter.bury(spool, letters("events.1", [n], size=300_000), "refused", most)
    assert deadletter.bury(spool, letters("events.2", [3], size=1000), "refused", most)
    before = deadletter.held_bytes(spool)
    assert not deadletter.bury(spool, letters("events.1", [4], size=300_000), "refused", most)
    assert "would pass COLLECTOR_DEAD_LETTER_MAX_BYTES (1048576)" in caplog.text
    assert "1 event kept in the log, to be tried again" in caplog.text
    assert deadletter.held_bytes(spool) == before and deadletter.count(spool) == 4
    deadletter.resend(spool, lambda rs: [True] * len(rs))
    assert deadletter.bury(spool, letters("events.1", [4], size=300_000), "refused", most)  # room again


def test_the_bytes_held_are_those_of_the_files_and_shown_as_a_metric(tmp_path):
    spool = tmp_path / "spool"
    assert deadletter.held_bytes(spool) == 0  # no directory yet
    deadletter.write(spool, letters("events.1", range(2)), "refused")
    deadletter.write(spool, letters("events.2", range(3)), "refused")
    on_disk_bytes = sum(p.stat().st_size for p in (spool / "dead-letter").iterdir())
    assert deadletter.held_bytes(spool) == on_disk_bytes > 0
    assert metric(metrics.exposition()[0].decode(), "collector_dead_letter_bytes") == on_disk_bytes
