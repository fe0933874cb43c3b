"""Dead letters (app/deadletter.py): kept with their reason, sent again, the undelivered kept."""
from __future__ import annotations

import json

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
