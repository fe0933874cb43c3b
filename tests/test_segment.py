"""Segment files (app/segment.py): how a record is framed, and a damaged one found."""
from __future__ import annotations

import os

from app.log import Log
from app.segment import Record, decode, encode, records_in
from tests.helpers import log_record, read_all


def test_a_record_comes_back_as_it_went_in():
    record = Record("events.3f2504e0-4f89-11d3-9a0c-0305e82c3301", "ünïcode\n\x00key".encode(), b"{}" * 3000, 12.25)
    data = encode(record) + encode(log_record(1))
    first, after = decode(data, 0)
    assert first == record
    assert decode(data, after) == (log_record(1), len(data))
    assert decode(data[:-1], after) == (None, after)  # incomplete: not written whole yet


def test_a_damaged_record_is_found_by_its_checksum(tmp_path):
    log = Log(str(tmp_path), 1 << 30, 1 << 20)
    log.append([log_record(0), log_record(1), log_record(2)])
    [segment] = log.owned()
    second = len(encode(log_record(0)))
    fd = os.open(segment.path, os.O_WRONLY)  # not the log's O_APPEND one: Linux appends a pwrite there
    os.pwrite(fd, b"X", second + 12)  # a byte inside the second record's body
    os.close(fd)
    assert [(r, after) for _, r, after in records_in(segment, 0)][1:] == [(None, -1)]
    assert read_all(segment)[0] == log_record(0)
