"""Segment files (app/segment.py): how a write is framed, how segments are named (a sequence,
never a clock, never a name that exists), what is counted and what is a crash's leftover."""
from __future__ import annotations

import fcntl
import os
import time

import pytest

from app import segment as seg
from app.log import Log
from app.segment import HEADER, Record, Segment, decode, encode, encode_write, leftover, segments, unacknowledged
from tests.helpers import log_record, read_all


def test_a_record_comes_back_as_it_went_in():
    record = Record("events.3f2504e0-4f89-11d3-9a0c-0305e82c3301", "ünïcode\n\x00key".encode(), b"{}" * 3000, 12.25)
    data = encode(record) + encode(log_record(1))
    first, more, after = decode(data, 0)
    assert (first, more) == (record, False)
    assert decode(data, after) == (log_record(1), False, len(data))
    assert decode(data[:-1], after) == (None, False, 0)  # incomplete: not written whole yet


def test_every_record_of_a_write_but_the_last_says_more_follows():
    data = encode_write([log_record(i) for i in range(3)])
    offset, seen = 0, []
    while offset < len(data):
        record, more, offset = decode(data, offset)
        seen.append((record, more))
    assert seen == [(log_record(0), True), (log_record(1), True), (log_record(2), False)]


def test_the_checksum_covers_the_length_word_too():
    data = bytearray(encode_write([log_record(0), log_record(1)]))
    data[7] ^= 0x80  # the first record's "more" bit
    assert decode(bytes(data), 0)[0] is None


def test_segments_are_named_by_a_sequence_that_no_clock_can_reorder(tmp_path, monkeypatch):
    clock = iter(range(10**9, 0, -10**6))  # a wall clock stepped back at every call
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    monkeypatch.setattr(time, "time", lambda: next(clock) / 1e9)
    created = [Segment.create(tmp_path) for _ in range(3)]
    assert segments(tmp_path) == [s.path for s in created]
    assert [seg.number(s.path) for s in created] == [1, 2, 3]
    for s in created:
        os.close(s.fd)


def test_a_number_is_never_given_twice_even_when_every_segment_is_gone_or_the_sequence_is_lost(tmp_path):
    first = Segment.create(tmp_path)
    os.close(first.fd)
    first.path.unlink()
    second = Segment.create(tmp_path)  # the directory is empty now: the sequence file remembers
    assert seg.number(second.path) == 2
    (tmp_path / seg.SEQUENCE).write_bytes(b"garbage")  # damaged: the segments there still bound it
    third = Segment.create(tmp_path)
    assert seg.number(third.path) == 3
    (tmp_path / "00001796000000000000-77.log").write_bytes(b"")  # the first format's name: a time in ns
    assert seg.number(Segment.create(tmp_path).path) == 1796000000000000 + 1


def test_no_segment_can_replace_another(tmp_path, monkeypatch):
    existing = Segment.create(tmp_path)
    os.write(existing.fd, b"records")
    monkeypatch.setattr(seg, "next_number", lambda directory: seg.number(existing.path))
    with pytest.raises(FileExistsError):
        Segment.create(tmp_path)
    assert existing.path.read_bytes() == HEADER + b"records"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_what_the_directory_holds_not_yet_delivered_is_each_segment_past_its_ack(tmp_path):
    log = Log(str(tmp_path), 1 << 30, 1 << 20)
    log.append([log_record(0), log_record(1)])
    [segment] = log.owned()
    assert unacknowledged(tmp_path) == segment.size
    segment.ack_path.write_bytes(b"%020d" % (segment.size - 10))
    assert unacknowledged(tmp_path) == 10


def test_a_crashs_leftovers_are_told_from_live_files(tmp_path):
    live = Segment.create(tmp_path)
    live.ack_path.write_bytes(b"0")
    orphan = tmp_path / "00000000000000000099-7.wal.ack"
    orphan.write_bytes(b"0")
    held, abandoned, fresh = (tmp_path / f".0000000000000000009{n}-7.wal.tmp" for n in (6, 7, 8))
    for path in (held, abandoned, fresh):
        path.write_bytes(HEADER)
    for path in (held, abandoned):
        os.utime(path, (time.time() - 120, time.time() - 120))
    holder = os.open(held, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # its creator is still at work
    assert [leftover(p) for p in (live.path, live.ack_path, orphan, held, abandoned, fresh)] == [
        False, False, True, False, True, False]
    os.close(holder)
    os.close(live.fd)


def test_a_segment_of_the_first_format_is_still_read(tmp_path):
    import struct

    from crc32c import crc32c

    def v1(record: Record) -> bytes:
        topic = record.topic.encode()
        body = seg.BODY.pack(record.accepted_at, len(topic), len(record.key)) + topic + record.key + record.value
        return struct.pack("<II", crc32c(body), len(body)) + body

    path = tmp_path / "00001796000000000000-77.log"
    path.write_bytes(v1(log_record(0)) + v1(log_record(1)))
    fd = os.open(path, os.O_RDONLY)
    old = Segment(path, fd, os.path.getsize(path), sealed=True)
    assert (old.v1, old.start, read_all(old)) == (True, 0, [log_record(0), log_record(1)])
    os.close(fd)
