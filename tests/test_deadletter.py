"""Dead letters (app/deadletter.py): kept with their reason, sent again, the undelivered kept."""
from __future__ import annotations

import json
from datetime import datetime

from app import deadletter
from app.segment import Record


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
