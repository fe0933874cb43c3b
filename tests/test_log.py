"""The write-ahead log (app/log.py): appends all or none, failed writes cut off, segments rolled,
the maximum kept, segments adopted from a gone owner."""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from app import log as wal
from app import segment as segment_module
from app.log import Log, LogFull
from app.segment import HEADER, encode, segments, unacknowledged
from tests.helpers import log_record, read_all


@pytest.mark.parametrize("failure", ["short write", "ENOSPC"])
def test_a_failed_write_leaves_the_records_around_it_whole(tmp_path, monkeypatch, failure):
    log = Log(str(tmp_path), 1 << 30, 1 << 20)
    log.append([log_record(0), log_record(1)])
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if failure == "ENOSPC":
            real_write(fd, bytes(data)[:17])  # the disk took a little, then filled
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[: len(data) // 2])

    monkeypatch.setattr(wal.os, "write", failing_write)
    with pytest.raises(OSError):
        log.append([log_record(2), log_record(3)])
    monkeypatch.setattr(wal.os, "write", real_write)
    log.append([log_record(4)])
    first, second = log.owned()  # the failed one is sealed, to be deleted once acknowledged
    assert first.sealed and not second.sealed
    assert read_all(first) + read_all(second) == [log_record(0), log_record(1), log_record(4)]
    assert os.path.getsize(first.path) == first.size


def test_when_the_cut_fails_too_the_segment_is_sealed_and_writing_goes_on_in_a_new_one(tmp_path, monkeypatch):
    log = Log(str(tmp_path), 1 << 30, 1 << 20)
    log.append([log_record(0)])
    real_write = os.write
    monkeypatch.setattr(wal.os, "write", lambda fd, data: real_write(fd, bytes(data)[:9]))
    monkeypatch.setattr(wal.os, "ftruncate", lambda fd, size: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(OSError):
        log.append([log_record(1)])
    monkeypatch.undo()
    log.append([log_record(2)])
    first, second = log.owned()
    assert first.sealed and not second.sealed
    assert read_all(first) == [log_record(0)]  # read up to what was written whole; the torn tail is never sent
    assert read_all(second) == [log_record(2)]


def test_the_log_refuses_past_its_maximum_and_rolls_segments(tmp_path):
    size = len(encode(log_record(0)))
    log = Log(str(tmp_path), 1 << 20, len(HEADER) + 3 * size)
    for i in range(7):
        log.append([log_record(i)])
    segments = log.owned()
    assert [len(read_all(s)) for s in segments] == [3, 3, 1]
    assert [s.sealed for s in segments] == [True, True, False]
    small = Log(str(tmp_path / "small"), 2 * size + len(HEADER), 1 << 20)
    small.append([log_record(0), log_record(1)])
    with pytest.raises(LogFull):
        small.append([log_record(2)])
    [segment] = small.owned()
    segment.ack_path.write_bytes(b"%020d" % segment.size)  # Kafka acknowledged all of it
    small.count()
    small.append([log_record(2)])  # the maximum is about what is not delivered yet, not the file


def test_a_segment_is_adopted_only_once_its_owner_lets_go_and_from_its_ack(tmp_path):
    owner, other, third = (Log(str(tmp_path), 1 << 30, 1 << 20) for _ in range(3))
    owner.append([log_record(0), log_record(1), log_record(2)])
    [segment] = owner.owned()
    other.adopt()
    assert other.owned() == []  # the owner holds its lock
    segment.ack_path.write_bytes(b"%020d" % len(encode(log_record(0))))
    owner.remove(segment, delete=False)  # as a process that dies: the kernel drops the lock
    other.adopt()
    [adopted] = other.owned()
    assert adopted.sealed
    assert read_all(adopted, adopted.acked()) == [log_record(1), log_record(2)]
    third.adopt()
    assert third.owned() == []  # one adopter at a time
    other.remove(adopted, delete=True)
    assert not segment.path.exists() and not segment.ack_path.exists()


def shared(tmp_path, max_bytes: int = 1 << 30) -> Log:
    """A worker's log with one sender per host: it lets go of its segments for that sender."""
    return Log(str(tmp_path), max_bytes, 1 << 20, shared=True)


def acknowledge_all(directory) -> None:
    """As the host's sender: Kafka acknowledged every segment whole."""
    for path in segments(directory):
        path.with_name(path.name + ".ack").write_bytes(b"%020d" % path.stat().st_size)


def test_a_worker_that_is_not_the_sender_counts_what_the_log_holds_now_not_what_it_ever_took(tmp_path):
    size = len(encode(log_record(0)))
    worker, other = shared(tmp_path, max_bytes=20 * size), shared(tmp_path, max_bytes=20 * size)
    for i in range(200):  # ten times its maximum over its life, delivered as it goes
        worker.append([log_record(i)])
        if i % 10 == 9:
            acknowledge_all(tmp_path)
            worker.count()
    other.append([log_record(0)])
    worker.count()
    other.count()
    assert worker.held == other.held == unacknowledged(tmp_path) == len(HEADER) + size  # one figure for all


def test_the_dead_letters_count_in_the_maximum(tmp_path):
    log = shared(tmp_path, max_bytes=1000)
    (tmp_path / "dead-letter").mkdir()
    (tmp_path / "dead-letter" / "events.1.jsonl").write_bytes(b"x" * 990)
    log.count()
    with pytest.raises(LogFull):
        log.append([log_record(0)])


def test_an_outage_makes_segments_bigger_not_more(tmp_path, monkeypatch):
    monkeypatch.setattr(Log, "ROLL_S", 0.0)
    monkeypatch.setattr(Log, "IDLE_S", 0.0)  # as if every append came after the roll time
    log = shared(tmp_path)
    for i in range(50):  # nothing is delivered: nothing is deleted
        log.append([log_record(i)])
        log.let_go_if_idle()
    assert len(segments(tmp_path)) == 2  # the one let go of, and the one written
    first = segments(tmp_path)[0]
    first.unlink()  # delivered and deleted by the sender: the writer may let go of the next
    log.append([log_record(50)])
    assert len(segments(tmp_path)) == 2 and first not in segments(tmp_path)


def test_a_follower_never_reads_a_writers_next_segment_before_the_end_of_the_one_before(tmp_path, monkeypatch):
    writer, follower = shared(tmp_path), shared(tmp_path)
    writer.append([log_record(0)])
    follower.adopt(follow=True)
    listing = wal.segments

    def writer_rolls_meanwhile(directory):  # between the follower's look at S1 and at the directory
        writer.append([log_record(1)])
        writer.seal()
        writer.append([log_record(2)])
        return listing(directory)

    monkeypatch.setattr(wal, "segments", writer_rolls_meanwhile)
    follower.adopt(follow=True)
    monkeypatch.undo()
    assert [r for s in follower.owned() for r in read_all(s)] == [log_record(0), log_record(1), log_record(2)]


def test_a_batch_whose_write_comes_up_short_is_never_read_by_a_follower(tmp_path, monkeypatch):
    writer, follower = shared(tmp_path), shared(tmp_path)
    writer.append([log_record(0)])
    real_write = os.write
    seen_meanwhile = []

    def short_write(fd: int, data: bytes) -> int:
        written = real_write(fd, bytes(data)[: 2 * len(encode(log_record(1))) + 3])  # two whole records of three
        follower.adopt(follow=True)  # the host's sender reads before the writer cuts it off
        seen_meanwhile.extend(r for s in follower.owned() for r in read_all(s))
        return written

    monkeypatch.setattr(wal.os, "write", short_write)
    with pytest.raises(OSError):
        writer.append([log_record(1), log_record(2), log_record(3)])  # answered 503
    monkeypatch.undo()
    follower.adopt(follow=True)
    assert seen_meanwhile == [log_record(0)]
    assert [r for s in follower.owned() for r in read_all(s)] == [log_record(0)]


def test_a_segment_the_disk_will_not_delete_is_kept_held_and_never_taken_again(tmp_path, monkeypatch):
    gone = shared(tmp_path)
    gone.append([log_record(0)])
    gone.seal()  # its writer let go: a sender takes it
    sender, other = Log(str(tmp_path), 1 << 30, 1 << 20), Log(str(tmp_path), 1 << 30, 1 << 20)
    sender.adopt()
    [segment] = sender.owned()
    real_unlink = Path.unlink

    def read_only(path, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "unlink", read_only)
    sender.remove(segment, delete=True)  # delivered, and the disk refuses
    sender.adopt()
    other.adopt()
    assert sender.owned() == other.owned() == []  # nobody sends it again
    monkeypatch.setattr(Path, "unlink", real_unlink)
    sender.tidy()
    assert not segment.path.exists()
    with pytest.raises(OSError):
        os.fstat(segment.fd)  # closed once deleted


def test_running_out_of_descriptors_neither_kills_the_sender_nor_empties_the_count(tmp_path, monkeypatch):
    gone = shared(tmp_path)
    gone.append([log_record(0)])
    gone.seal()
    sender = Log(str(tmp_path), 1 << 30, 1 << 20)
    sender.count()
    held = sender.held

    def emfile(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(wal.os, "open", emfile)
    sender.adopt()  # the segment waits for a later pass
    monkeypatch.setattr(wal, "segments", emfile)
    monkeypatch.setattr(wal, "unacknowledged", emfile)
    sender.adopt()
    sender.count()
    assert (sender.owned(), sender.held) == ([], held)
    monkeypatch.undo()
    sender.adopt()
    assert len(sender.owned()) == 1


def test_what_a_crash_leaves_behind_is_swept(tmp_path):
    log = shared(tmp_path)
    log.append([log_record(0)])
    [live] = segments(tmp_path)
    live.with_name(live.name + ".ack").write_bytes(b"0")
    orphan = tmp_path / "00000000000000000007-1.wal.ack"
    orphan.write_bytes(b"0")
    tmp = tmp_path / ".00000000000000000008-1.wal.tmp"
    tmp.write_bytes(HEADER)
    os.utime(tmp, (time.time() - 120, time.time() - 120))
    Log(str(tmp_path), 1 << 30, 1 << 20).tidy()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, live.name + ".ack", "sequence"])


def test_a_dying_writers_next_segment_is_never_taken_before_the_one_it_still_holds(tmp_path):
    size = len(encode(log_record(0)))
    dying = Log(str(tmp_path), 1 << 30, len(HEADER) + size)  # one sender per worker: it holds all its segments
    dying.append([log_record(0)])
    dying.append([log_record(1)])
    first, second = dying.owned()
    adopter = Log(str(tmp_path), 1 << 30, 1 << 20)
    os.close(second.fd)  # the kernel lets go of a dead process's locks one descriptor at a time
    adopter.adopt()
    assert adopter.owned() == []
    os.close(first.fd)
    adopter.adopt()
    assert [r for s in adopter.owned() for r in read_all(s)] == [log_record(0), log_record(1)]


def test_a_segment_whose_first_page_cannot_be_read_costs_no_descriptor(tmp_path, monkeypatch):
    gone = shared(tmp_path)
    gone.append([log_record(0)])
    gone.seal()
    sender = shared(tmp_path)
    before = len(os.listdir("/proc/self/fd"))

    def eio(*args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segment_module.os, "pread", eio)
    for _ in range(20):
        sender.adopt(follow=True)
    assert (sender.owned(), len(os.listdir("/proc/self/fd"))) == ([], before)
    monkeypatch.undo()
    sender.adopt(follow=True)
    assert [read_all(s) for s in sender.owned()] == [[log_record(0)]]


def test_segments_are_named_so_that_a_collector_of_the_first_format_leaves_them_alone(tmp_path):
    log = shared(tmp_path)
    log.append([log_record(0)])
    assert [p.suffix for p in segments(tmp_path)] == [".wal"]  # it read only *.log, and took other frames as damage
    assert segment_module.writer(segments(tmp_path)[0]) == os.getpid()


def test_a_log_whose_directory_is_not_made_yet_counts_nothing_and_says_nothing(tmp_path, caplog):
    wal = Log(str(tmp_path / "not-yet"), 1 << 30, 1 << 20)  # a worker counting before any segment was made
    wal.count()
    assert wal.held == 0 and "could not be counted" not in caplog.text
