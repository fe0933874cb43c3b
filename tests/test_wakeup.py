"""The sender process's wake-up (app/wakeup.py): an append to the log's directory wakes it, a new
segment says so, a stop ends the wait, and a directory the kernel will not watch means polling."""
from __future__ import annotations

import os
import threading

from inotify_simple import Event, flags

from app import wakeup as wakeup_module
from app.segment import Record, Segment, encode_write
from app.wakeup import Wakeup

LONG = 60.0  # a wait that would make the test hang if no append woke it


def test_an_append_wakes_the_sender_and_a_new_segment_says_so(tmp_path):
    first = Segment.create(tmp_path)  # as a worker makes one: under a temporary name, then linked
    wakeup = Wakeup.of(tmp_path, threading.Event())
    assert wakeup is not None
    try:
        os.write(first.fd, encode_write([Record("events.1", b"k", b"{}")]))  # through the worker's descriptor
        assert wakeup.wait(LONG) is False  # woken, not stopped
        assert wakeup.appended and not wakeup.created  # an append to a known segment
        second = Segment.create(tmp_path)
        assert wakeup.wait(LONG) is False
        assert wakeup.appended and wakeup.created  # a new segment: the sender lists the directory at once
        os.close(second.fd)
    finally:
        wakeup.close()
        os.close(first.fd)


def test_a_stop_ends_the_wait_and_an_idle_log_waits_only_its_interval(tmp_path):
    stop = threading.Event()
    wakeup = Wakeup.of(tmp_path / "spool", stop)  # made if missing
    assert wakeup is not None and (tmp_path / "spool").is_dir()
    try:
        assert wakeup.wait(0.01) is False  # nothing came: back after the interval, for a full pass
        stop.set()
        assert wakeup.wait(LONG) is True
    finally:
        wakeup.close()


def test_a_directory_the_kernel_will_not_watch_leaves_the_sender_polling(tmp_path, monkeypatch, caplog):
    def refused() -> None:
        raise OSError(24, "Too many open files")  # fs.inotify.max_user_instances reached

    monkeypatch.setattr(wakeup_module, "INotify", refused)
    assert Wakeup.of(tmp_path, threading.Event()) is None
    assert "cannot be watched" in caplog.text


def test_the_senders_own_files_wake_nothing(tmp_path):
    wakeup = Wakeup.of(tmp_path, threading.Event())
    assert wakeup is not None
    try:
        (tmp_path / "00000000000000000001-1.wal.ack").write_bytes(b"8")  # an acknowledged offset
        (tmp_path / "sender.lock").write_bytes(b"beat")
        assert wakeup.wait(0.2) is False and not wakeup.appended  # waited out its time: nothing woke it
        (tmp_path / "00000000000000000001-1.wal").write_bytes(b"head")
        assert wakeup.wait(LONG) is False and wakeup.appended and wakeup.created
    finally:
        wakeup.close()


class Recorded(threading.Event):
    """A stop event that records the pace waits and runs ``during`` in the first of them."""

    def __init__(self, during) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.during = during

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if self.during:
            self.during, during = None, self.during
            during()
        return False


def test_a_busy_log_is_read_at_a_pace_and_what_came_meanwhile_in_the_same_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(wakeup_module, "PACE_MS", 60_000)  # no machine is slow enough to miss it (never slept)
    first = Segment.create(tmp_path)
    made = []
    stop = Recorded(lambda: made.append(Segment.create(tmp_path)))  # a segment made while it waits
    wakeup = Wakeup.of(tmp_path, stop)
    assert wakeup is not None
    try:
        os.write(first.fd, encode_write([Record("events.1", b"k", b"{}")]))
        assert wakeup.wait(LONG) is False and wakeup.appended
        assert stop.waits == []  # the first append after a quiet spell is read at once
        os.write(first.fd, encode_write([Record("events.1", b"k", b"{}")]))
        assert wakeup.wait(LONG) is False and wakeup.appended
        assert len(stop.waits) == 1 and 59 < stop.waits[0] <= 60  # the rest of the pace
        assert wakeup.created  # the segment made during the pace: adopted in this pass, not the next
        assert wakeup.wait(0.01) is False and not wakeup.appended  # its event was taken: nothing is left over
    finally:
        wakeup.close()
        os.close(first.fd)
        for segment in made:
            os.close(segment.fd)


def test_an_overflowed_queue_counts_as_a_new_segment(tmp_path):
    wakeup = Wakeup.of(tmp_path, threading.Event())
    assert wakeup is not None
    try:  # the kernel's queue was full: whatever it dropped may have been a segment's creation
        wakeup._take([Event(wd=-1, mask=flags.Q_OVERFLOW, cookie=0, name="")])
        assert wakeup.appended and wakeup.created
    finally:
        wakeup.close()
