"""Dead letters: events Kafka refused for good, kept with the reason until someone sends them again.

``COLLECTOR_SPOOL_DIR/dead-letter/<topic>.jsonl``, one JSON object a line:
``{"event_id", "topic", "key", "value": <the event>, "reason", "dead_at"}``. Appends and the
drain command's rewrite hold the file's ``flock``, so several workers and the command can
share a file.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from . import metrics
from .segment import Record

log = logging.getLogger(__name__)
DIRECTORY = "dead-letter"


def directory(spool: str | Path) -> Path:
    """The dead-letter directory of a spool directory."""
    return Path(spool) / DIRECTORY


def _event(record: Record) -> Any:
    try:
        return orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return record.value.decode(errors="replace")


def event_id(record: Record) -> str | None:
    """The event id inside a record's value."""
    event = _event(record)
    return event.get("event_id") if isinstance(event, dict) else None


def line(record: Record, reason: str) -> bytes:
    """One dead letter."""
    event = _event(record)
    return orjson.dumps({"event_id": event_id(record), "topic": record.topic,
                         "key": record.key.decode(errors="replace"), "value": event, "reason": reason,
                         "dead_at": datetime.now(UTC).isoformat(timespec="milliseconds")}) + b"\n"


@contextlib.contextmanager
def _locked(path: Path, flags: int) -> Iterator[int]:
    fd = os.open(path, flags, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def write(spool: str | Path, records: list[Record], reason: str) -> None:
    """Append ``records`` of one topic to their dead-letter file; raises ``OSError``."""
    folder = directory(spool)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / f"{records[0].topic}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND) as fd:
        os.write(fd, b"".join(line(r, reason) for r in records))


def bury(spool: str | Path, records: list[Record], reason: str) -> bool:
    """Dead-letter ``records`` of one topic, logging each event once and counting them; False
    (and logged) when they could not be written: then they must wait where they are."""
    try:
        write(spool, records, reason)
    except OSError as exc:
        log.error("dead letters not written (%r): %d events wait in memory", exc, len(records))
        return False
    for record in records:
        log.error("event %s dead-lettered (topic %s): %s", event_id(record), record.topic, reason)
    metrics.DEAD_LETTER.inc(len(records))
    return True


def count(spool: str | Path) -> int:
    """How many dead letters the spool directory holds."""
    return sum(len([raw for raw in path.read_bytes().splitlines() if raw.strip()])
               for path in directory(spool).glob("*.jsonl"))


def resend(spool: str | Path, send: Callable[[list[Record]], list[bool]]) -> tuple[int, int]:
    """Hand every dead letter to ``send`` (which says which were delivered), file by file, and
    keep only those it did not deliver: ``(delivered, left)``."""
    delivered = left = 0
    for path in sorted(directory(spool).glob("*.jsonl")):
        with _locked(path, os.O_RDWR) as fd:
            lines = [raw for raw in os.read(fd, os.fstat(fd).st_size).splitlines() if raw.strip()]
            letters = [orjson.loads(raw) for raw in lines]
            records = [Record(d["topic"], d["key"].encode(), orjson.dumps(d["value"])) for d in letters]
            outcome = send(records) if records else []
            kept = [raw + b"\n" for raw, ok in zip(lines, outcome, strict=True) if not ok]
            delivered += len(lines) - len(kept)
            left += len(kept)
            if kept:
                os.ftruncate(fd, 0)
                os.pwrite(fd, b"".join(kept), 0)
            else:
                path.unlink()
    return delivered, left
