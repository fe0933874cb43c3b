"""What the sender holds (app/ledger.py): per segment, how far Kafka has acknowledged it; per
topic, the records waiting and in flight, in read order."""
from __future__ import annotations

import pytest

from app.ledger import Cursor, Entry, Lane
from app.log import Log
from app.reader import writes_in
from tests.helpers import log_record, read_all


def read(cursor: Cursor) -> list[Entry]:
    """Read the rest of the cursor's segment, as the sender does: each record unsettled until Kafka answers."""
    entries = []
    for write in writes_in(cursor.segment, cursor.position):
        for record in write.records:
            entry = Entry(len(entries) + 1, cursor, write.offset, record)
            cursor.unsettled.append(entry)
            entries.append(entry)
        cursor.position = write.end
    return entries


@pytest.fixture
def log(tmp_path):
    """A log of one segment of three records."""
    log = Log(str(tmp_path), 1 << 30, 1 << 20)
    for i in range(3):
        log.append([log_record(i)])
    yield log
    for segment in log.owned():
        log.remove(segment, delete=False)


@pytest.fixture
def segment(log):
    [segment] = log.owned()
    return segment


def test_the_mark_passes_a_record_once_it_and_every_one_before_it_is_settled(segment):
    cursor = Cursor(segment)
    first, second, third = read(cursor)
    assert (cursor.mark(), cursor.backlog()) == (segment.start, segment.size - segment.start)
    second.settled = True  # acknowledged before the first: the mark waits for the first
    assert cursor.mark() == segment.start
    first.settled = True
    assert (cursor.mark(), cursor.backlog()) == (third.offset, segment.size - third.offset)
    third.settled = True
    assert (cursor.mark(), cursor.backlog()) == (segment.size, 0)


def test_a_segment_is_finished_once_sealed_and_all_settled(log, segment):
    cursor = Cursor(segment)
    for entry in read(cursor):
        entry.settled = True
    assert not cursor.finished  # more may be appended
    log.seal()
    assert cursor.finished


def test_the_next_cursor_starts_where_the_recorded_mark_is(segment):
    cursor = Cursor(segment)
    first, second, third = read(cursor)
    first.settled = second.settled = True
    cursor.record_mark()
    assert segment.acked() == third.offset
    resumed = Cursor(segment)  # after a crash: another sender, the same file
    assert read_all(segment, resumed.position) == [log_record(2)]


def entry(seq: int) -> Entry:
    return Entry(seq, None, 0, log_record(seq))  # no cursor: a lane never uses it


def test_records_that_failed_go_again_in_read_order():
    lane = Lane()
    lane.waiting.extend(entry(seq) for seq in (1, 2, 3, 4))
    in_flight = [lane.waiting.popleft() for _ in range(3)]
    for failed in reversed(in_flight):  # Kafka's answers come in any order
        lane.back(failed)
    assert [e.seq for e in lane.ordered()] == [1, 2, 3, 4]


def test_failures_back_off_once_a_round_up_to_5_s_until_a_delivery():
    lane = Lane()
    lane.failed("timed out", 0.05, now=100.0)
    assert (lane.attempts, lane.failing_since, lane.retry_at) == (1, 100.0, pytest.approx(100.1))
    lane.failed("timed out", 0.05, now=100.05)  # another record of the same round
    assert (lane.attempts, lane.retry_at) == (1, pytest.approx(100.1))
    lane.failed("timed out", 0.05, now=100.2)
    assert (lane.attempts, lane.retry_at) == (2, pytest.approx(100.4))
    for now in range(200, 400, 10):
        lane.failed("no leader", 0.05, now=now)
    assert (lane.retry_at, lane.failing_since, lane.error) == (390 + 5.0, 100.0, "no leader")
    lane.delivered()
    assert (lane.attempts, lane.failing_since) == (0, 0.0)


def test_the_oldest_send_is_that_of_the_first_unsettled_record_in_flight():
    lane = Lane()
    first, second = entry(1), entry(2)
    first.sent_at, second.sent_at = 10.0, 11.0
    lane.flight.extend([first, second])
    assert lane.oldest_send() == 10.0
    first.settled = True
    assert lane.oldest_send() == 11.0
    second.settled = True
    assert lane.oldest_send() == 0.0
