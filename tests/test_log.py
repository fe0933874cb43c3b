"""The write-ahead log: records framed and checksummed, failed writes cut off, segments adopted."""
from __future__ import annotations

import errno
import os

import pytest

from app import log as wal
from app import segment
from app.log import Log, LogFull
from app.segment import Record, decode, encode, records_in


def rec(i: int, topic: str = "events.1") -> Record:
    return Record(topic, f"key\n{i}".encode(), b'{"n": %d}' % i, 1_700_000_000.5 + i)


def read_all(segment: segment.Segment, offset: int = 0) -> list[Record | None]:
    return [r for _, r, _ in records_in(segment, offset)]


def test_a_record_comes_back_as_it_went_in():
    record = Record("events.3f2504e0-4f89-11d3-9a0c-0305e82c3301", "ünïcode\n\x00key".encode(), b"{}" * 3000, 12.25)
    data = encode(record) + encode(rec(1))
    first, after = decode(data, 0)
    assert first == record
    assert decode(data, after) == (rec(1), len(data))
    assert decode(data[:-1], after) == (None, after)  # incomplete: not written whole yet


def test_a_damaged_record_is_found_by_its_checksum(tmp_path):
    log = Log(str(tmp_path), 1 << 30, 1 << 20)
    log.append([rec(0), rec(1), rec(2)])
    [segment] = log.owned()
    second = len(encode(rec(0)))
    fd = os.open(segment.path, os.O_WRONLY)  # not the log's O_APPEND one: Linux appends a pwrite there
    os.pwrite(fd, b"X", second + 12)  # a byte inside the second record's body
    os.close(fd)
    assert [(r, after) for _, r, after in records_in(segment, 0)][1:] == [(None, -1)]
    assert read_all(segment)[0] == rec(0)


@pytest.mark.parametrize("failure", ["short write", "ENOSPC"])
def test_a_failed_write_leaves_the_records_around_it_whole(tmp_path, monkeypatch, failure):
    log = Log(str(tmp_path), 1 << 30, 1 << 20)
    log.append([rec(0), rec(1)])
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if failure == "ENOSPC":
            real_write(fd, bytes(data)[:17])  # the disk took a little, then filled
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[: len(data) // 2])

    monkeypatch.setattr(wal.os, "write", failing_write)
    with pytest.raises(OSError):
        log.append([rec(2), rec(3)])
    monkeypatch.setattr(wal.os, "write", real_write)
    log.append([rec(4)])
    first, second = log.owned()  # the failed one is sealed, to be deleted once acknowledged
    assert first.sealed and not second.sealed
    assert read_all(first) + read_all(second) == [rec(0), rec(1), rec(4)]
    assert os.path.getsize(first.path) == first.size


def test_when_the_cut_fails_too_the_segment_is_sealed_and_writing_goes_on_in_a_new_one(tmp_path, monkeypatch):
    log = Log(str(tmp_path), 1 << 30, 1 << 20)
    log.append([rec(0)])
    real_write = os.write
    monkeypatch.setattr(wal.os, "write", lambda fd, data: real_write(fd, bytes(data)[:9]))
    monkeypatch.setattr(wal.os, "ftruncate", lambda fd, size: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(OSError):
        log.append([rec(1)])
    monkeypatch.undo()
    log.append([rec(2)])
    first, second = log.owned()
    assert first.sealed and not second.sealed
    assert read_all(first) == [rec(0)]  # read up to what was written whole; the torn tail is never sent
    assert read_all(second) == [rec(2)]


def test_the_log_refuses_past_its_maximum_and_rolls_segments(tmp_path):
    size = len(encode(rec(0)))
    log = Log(str(tmp_path), 1 << 20, 3 * size)
    for i in range(7):
        log.append([rec(i)])
    segments = log.owned()
    assert [len(read_all(s)) for s in segments] == [3, 3, 1]
    assert [s.sealed for s in segments] == [True, True, False]
    small = Log(str(tmp_path / "small"), 2 * size, 1 << 20)
    small.append([rec(0), rec(1)])
    with pytest.raises(LogFull):
        small.append([rec(2)])
    assert small.owned()[0].sealed  # full: the sender may delete it once acknowledged, making room


def test_a_segment_is_adopted_only_once_its_owner_lets_go_and_from_its_ack(tmp_path):
    owner, other, third = (Log(str(tmp_path), 1 << 30, 1 << 20) for _ in range(3))
    owner.append([rec(0), rec(1), rec(2)])
    [segment] = owner.owned()
    other.adopt()
    assert other.owned() == []  # the owner holds its lock
    segment.ack_path.write_bytes(b"%020d" % len(encode(rec(0))))
    owner.remove(segment, delete=False)  # as a process that dies: the kernel drops the lock
    other.adopt()
    [adopted] = other.owned()
    assert adopted.sealed
    assert read_all(adopted, adopted.acked()) == [rec(1), rec(2)]
    third.adopt()
    assert third.owned() == []  # one adopter at a time
    other.remove(adopted, delete=True)
    assert not segment.path.exists() and not segment.ack_path.exists()
