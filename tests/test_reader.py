"""Reading a segment (app/reader.py): whole writes only, a damaged record costs that record
alone, and a write a crash left unfinished is skipped without counting anything lost."""
from __future__ import annotations

import os

from app.log import Log
from app.reader import writes_in
from app.segment import FRAME, encode, encode_write
from tests.helpers import log_record, read_all


def written(tmp_path, writes: list[list[int]]):
    """A sealed segment holding ``writes`` (each a list of record numbers), and each write's offset."""
    log = Log(str(tmp_path), 1 << 30, 1 << 24)
    offsets = []
    for numbers in writes:
        offsets.append(log.owned()[0].size if log.owned() else len(b"\x93WAL\r\n\x00\x02"))
        log.append([log_record(n) for n in numbers])
    log.seal()
    [segment] = log.owned()
    return segment, offsets


def damage(segment, offset: int) -> None:
    fd = os.open(segment.path, os.O_WRONLY)  # not the log's O_APPEND one: Linux appends a pwrite there
    os.pwrite(fd, bytes([os.pread(segment.fd, 1, offset)[0] ^ 0x5A]), offset)
    os.close(fd)


def summary(segment):
    return [([int(r.value[6:-1]) for r in w.records], w.lost, w.torn) for w in writes_in(segment, segment.start)]


def test_one_flipped_byte_in_a_records_body_costs_that_record_alone(tmp_path):
    segment, offsets = written(tmp_path, [[n] for n in range(240)])
    damage(segment, offsets[120] + FRAME.size + 20)
    found = summary(segment)
    assert [n for w in found for n in w[0]] == [n for n in range(240) if n != 120]
    assert sum(w[1] for w in found) == 1 and not any(w[2] for w in found)


def test_a_flipped_byte_in_a_length_is_passed_by_finding_the_next_whole_frame(tmp_path):
    segment, offsets = written(tmp_path, [[n] for n in range(20)])
    damage(segment, offsets[7] + 6)  # the length word's third byte: the record claims megabytes
    found = summary(segment)
    assert [n for w in found for n in w[0]] == [n for n in range(20) if n != 7]
    assert sum(w[1] for w in found) == 1


def test_a_damaged_record_inside_a_write_costs_only_itself(tmp_path):
    segment, offsets = written(tmp_path, [[0], [1, 2, 3, 4], [5]])
    damage(segment, offsets[1] + len(encode(log_record(1))) + FRAME.size + 3)  # record 2's body
    assert [n for w in summary(segment) for n in w[0]] == [0, 1, 3, 4, 5]


def test_an_unfinished_write_at_the_end_of_a_sealed_segment_is_torn_not_lost(tmp_path):
    segment, _ = written(tmp_path, [[0], [1]])
    tail = encode_write([log_record(2), log_record(3), log_record(4)])
    with open(segment.path, "ab") as file:  # a kill mid-write: two whole frames of three, and a piece
        file.write(tail[: len(tail) - 5])
    segment.size = os.path.getsize(segment.path)
    assert summary(segment) == [([0], 0, False), ([1], 0, False), ([], 0, True)]


def test_a_write_still_being_written_is_not_read_until_whole(tmp_path):
    log = Log(str(tmp_path), 1 << 30, 1 << 24)
    log.append([log_record(0)])
    [segment] = log.owned()
    tail = encode_write([log_record(1), log_record(2)])
    os.write(segment.fd, tail[: len(encode(log_record(1), more=True))])  # the first record of two, whole
    segment.size = os.path.getsize(segment.path)
    assert read_all(segment) == [log_record(0)]  # its write is not whole: none of it is read
    os.write(segment.fd, tail[len(encode(log_record(1), more=True)):])
    segment.size = os.path.getsize(segment.path)
    assert read_all(segment) == [log_record(0), log_record(1), log_record(2)]


def test_damage_in_a_segment_still_written_waits_until_what_follows_is_there(tmp_path):
    log = Log(str(tmp_path), 1 << 30, 1 << 24)
    log.append([log_record(0)])
    log.append([log_record(1)])
    [segment] = log.owned()
    damage(segment, segment.size - 3)  # the last record, complete, damaged: nothing follows yet
    assert summary(segment) == [([0], 0, False)]
    log.append([log_record(2)])
    assert summary(segment) == [([0], 0, False), ([], 1, False), ([2], 0, False)]


def test_a_write_cut_between_two_records_at_the_end_of_a_sealed_segment_is_torn(tmp_path):
    segment, _ = written(tmp_path, [[0]])
    with open(segment.path, "ab") as file:  # the first record of two, whole: the write was not
        file.write(encode(log_record(1), more=True))
    segment.size = os.path.getsize(segment.path)
    assert summary(segment) == [([0], 0, False), ([], 0, True)]
