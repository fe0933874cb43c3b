"""The write-ahead log (app/log.py): appends all or none, failed writes cut off, segments rolled,
the maximum kept, segments adopted from a gone owner."""
from __future__ import annotations

import errno
import os

import pytest

from app import log as wal
from app.log import Log, LogFull
from app.segment import HEADER, encode
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
