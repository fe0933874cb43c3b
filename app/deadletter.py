"""Dead letters: events Kafka refused for good, kept with the reason until someone sends them again.

``COLLECTOR_SPOOL_DIR/dead-letter/<topic>.jsonl``, one JSON object a line: ``{"event_id", "topic",
"key", "value": <the event>, "reason", "dead_at"}``. A worker's append (whole and synced, or cut off)
and the drain command's rewrite (the letters kept go to a temporary file renamed over the file) hold
the file's ``flock``. All files hold at most ``COLLECTOR_DEAD_LETTER_MAX_BYTES``: past it, events
stay in the log.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from . import metrics
from .logs import plural
from .segment import Record

log = logging.getLogger(__name__)
DIRECTORY = "dead-letter"
SUFFIX = ".jsonl"
TEMPORARY = ".tmp"  # a rewrite's file, ``.<topic>.jsonl.tmp``: never read as letters
BATCH = 1000  # letters handed to ``send`` at once, at most
BATCH_BYTES = 16 * 1024**2  # ... and about this many bytes of them, at most
START = b'{"event_id":'  # how every letter begins: where one glued to a torn line is found again
FIELDS = {"topic", "key", "value", "reason"}
Letter = dict[str, Any]


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


def held_bytes(spool: str | Path) -> int:
    """Bytes the dead-letter files hold now (listed, not read), set as their gauge; raises ``OSError``."""
    total = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(directory(spool)) as listing:
        for entry in listing:
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                total += entry.stat(follow_symlinks=False).st_size
    metrics.DEAD_LETTER_BYTES.set(total)
    return total


def _open_locked(path: Path, flags: int) -> tuple[int, int]:
    """``path`` open and locked, and still the file at ``path``, and its size; raises ``FileNotFoundError``."""
    while True:
        fd = os.open(path, flags, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            # While this waited, a rewrite may have deleted the file or renamed another over it:
            # what is written to this one then is lost. Open the path again.
            with contextlib.suppress(FileNotFoundError):
                there = os.stat(path)
                if mine.st_nlink and (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                    return fd, mine.st_size
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data``, or ``OSError``: a short count (a disk nearly full) is no success."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if not written:
            raise OSError(errno.ENOSPC, f"short write: {len(data) - len(view)} of {len(data)} bytes")
        view = view[written:]


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(spool: str | Path, records: list[Record], reason: str, most: int | None = None) -> None:
    """Append ``records`` of one topic to their file, all or none, synced; raises ``OSError``, also
    when the dead letters would pass ``most`` bytes (COLLECTOR_DEAD_LETTER_MAX_BYTES; None: no bound)."""
    folder = directory(spool)
    folder.mkdir(parents=True, exist_ok=True)
    data = b"".join(line(r, reason) for r in records)
    held = held_bytes(spool)
    if most is not None and held + len(data) > most:
        raise OSError(errno.ENOSPC, f"the dead letters hold {held} bytes, and {len(data)} more would pass "
                                    f"COLLECTOR_DEAD_LETTER_MAX_BYTES ({most})")
    fd, size = _open_locked(folder / f"{records[0].topic}{SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        _write_all(fd, data)
        # Synced before the records are settled: once buried, their segment may be deleted.
        os.fdatasync(fd)
        if not size:
            _sync_dir(folder)  # a new file's name
    except OSError:
        # Cut off what was written (ours: the lock is held); if even that fails, the torn line
        # is skipped, and logged, when the letters are read.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise
    finally:
        os.close(fd)
    metrics.DEAD_LETTER_BYTES.set(held + len(data))


def bury(spool: str | Path, records: list[Record], reason: str, most: int | None = None) -> bool:
    """Dead-letter ``records`` of one topic, each logged and counted; False (logged) when not written."""
    try:
        write(spool, records, reason, most)
    except OSError as exc:
        log.error("dead letters not written (%s): %s kept in the log, to be tried again", exc,
                  plural(len(records), "event"))
        return False
    for record in records:
        log.error("event %s dead-lettered (topic %s): %s", event_id(record), record.topic, reason)
    metrics.DEAD_LETTER.inc(len(records))
    return True


def _parse(raw: bytes) -> tuple[bytes, bytes, Letter | None]:
    """``(torn, rest, letter)``: a line is a letter, or one torn by an older version's short write and the next."""
    at = 0
    while at >= 0:
        with contextlib.suppress(orjson.JSONDecodeError):
            letter = orjson.loads(raw[at:])
            if isinstance(letter, dict) and letter.keys() >= FIELDS:
                return raw[:at], raw[at:], letter
        at = raw.find(START, at + 1)
    return raw, b"", None


def _letters(path: Path, fd: int) -> Iterator[tuple[bytes, Letter]]:
    """Each letter of the open file, from its start, and its line; a torn line is logged and skipped."""
    with open(fd, "rb", closefd=False) as lines:  # buffered: read in pieces, a line at a time
        for raw in lines:
            torn, whole, letter = _parse(raw)
            if torn.strip():
                log.error("%s: a torn dead letter skipped (%s): %r", path.name, plural(len(torn), "byte"), torn[:200])
            if letter is not None:
                yield whole.rstrip(b"\n") + b"\n", letter


def _files(spool: str | Path) -> Iterator[tuple[Path, int]]:
    """Each dead-letter file (not a temporary one), open and locked while the caller has it."""
    folder = directory(spool)
    names: list[str] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # no directory: no letters
        names = sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX) and not n.startswith("."))
    for name in names:
        try:
            fd, _ = _open_locked(folder / name, os.O_RDONLY)
        except FileNotFoundError:
            continue  # sent meanwhile
        try:
            yield folder / name, fd
        finally:
            os.close(fd)


def count(spool: str | Path) -> int:
    """How many dead letters the spool directory holds."""
    return sum(1 for path, fd in _files(spool) for _ in _letters(path, fd))


def _batches(letters: Iterator[tuple[bytes, Letter]]) -> Iterator[list[tuple[bytes, Letter]]]:
    """``letters`` in lists of at most ``BATCH`` letters and about ``BATCH_BYTES``."""
    batch: list[tuple[bytes, Letter]] = []
    size = 0
    for raw, letter in letters:
        batch.append((raw, letter))
        size += len(raw)
        if len(batch) >= BATCH or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _rewrite(path: Path, fd: int, send: Callable[[list[Record]], list[bool]]) -> tuple[int, int]:
    """Send the letters of ``path`` (``fd``, locked) and keep the undelivered: ``(delivered, kept)``."""
    # Those kept go to a temporary file, synced and renamed over ``path``: a kill at any point
    # leaves every letter in ``path``. One name will do, as a rewrite holds the lock of ``path``
    # while its file exists; a killed one's is truncated here and goes in this rewrite.
    tmp = path.with_name(f".{path.name}{TEMPORARY}")
    tmp_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    delivered = kept = 0
    try:
        for batch in _batches(_letters(path, fd)):
            outcome = send([Record(d["topic"], d["key"].encode(), orjson.dumps(d["value"])) for _, d in batch])
            keep = [raw for (raw, _), ok in zip(batch, outcome, strict=True) if not ok]
            _write_all(tmp_fd, b"".join(keep))
            delivered += len(batch) - len(keep)
            kept += len(keep)
        if kept:
            os.fsync(tmp_fd)
            os.rename(tmp, path)
        else:
            tmp.unlink()  # first: a kill between the two leaves letters sent twice, not a stray file
            path.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(tmp_fd)
    _sync_dir(path.parent)
    return delivered, kept


def resend(spool: str | Path, send: Callable[[list[Record]], list[bool]]) -> tuple[int, int]:
    """Hand the dead letters to ``send`` (which says which it delivered), a batch at a time: ``(delivered, left)``."""
    outcomes = [_rewrite(path, fd, send) for path, fd in _files(spool)]
    return sum(sent for sent, _ in outcomes), sum(kept for _, kept in outcomes)
