"""A model-based test of the write-ahead log, as Vector tests its disk buffer: Hypothesis runs
random sequences of appends by several writers, rolls, crashes of a writer or of the sender,
adoption and acknowledgements, a damaged byte, a short write and a full disk, against a plain
model of what must reach Kafka (every write answered, none refused) and in what order (each
writer's, as first seen: delivery is at least once)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from app.config import Settings
from app.kafka_client import producer_configs
from app.log import Log, LogFull
from app.segment import Record, decode, segments
from app.sender import Sender
from app.topics import Topics
from tests.fakes import FakeKafkaAdmin, FakeKafkaProducer

WRITERS = 3


@contextlib.contextmanager
def failing_write(kind: str) -> Iterator[None]:
    """The next write comes up short ("short"), fails half-way ("full": ENOSPC), or both and the
    cut that should undo it fails too ("torn")."""
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        written = real_write(fd, bytes(data)[: len(data) // 2])
        if kind == "full":
            raise OSError(errno.ENOSPC, "No space left on device")
        return written

    def ftruncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with mock.patch("app.log.os.write", write), (
            mock.patch("app.log.os.ftruncate", ftruncate) if kind == "torn" else contextlib.nullcontext()):
        yield


class LogMachine(RuleBasedStateMachine):
    """Writers (each a worker process: its own Log, with its own descriptors and locks), one sender
    per host following them all, and a fake Kafka that acknowledges at once or holds."""

    @initialize()
    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="log-model-"))
        self.settings = Settings.from_env({"COLLECTOR_SPOOL_DIR": str(self.dir), "COLLECTOR_SENDER": "host"})
        FakeKafkaAdmin.reset()
        self.producers: list[FakeKafkaProducer] = []
        self.writers = [self._writer() for _ in range(WRITERS)]
        self.lives = [0] * WRITERS  # each writer's incarnation: order is promised within one
        self.sequence = 0
        self.accepted: dict[str, tuple[int, int, int]] = {}  # event -> (writer, life, place in its writes)
        self.refused: set[str] = set()
        self.damaged: set[str] = set()  # may be lost, each by a byte of its own record
        self.sender = self._sender()

    def _writer(self) -> Log:
        return Log(str(self.dir), 3000, 1024, shared=True)  # full now and then, and rolls often

    def _sender(self) -> Sender:
        configs = producer_configs(self.settings)

        def producer(**kwargs: object) -> FakeKafkaProducer:
            self.producers.append(FakeKafkaProducer(**kwargs))
            return self.producers[-1]

        sender = Sender(self.settings, Log(str(self.dir), 3000, 1024, shared=True),
                        Topics(FakeKafkaAdmin, configs, 1, 1), producer, configs)
        sender.reset()
        return sender

    def _records(self, writer: int, count: int) -> tuple[list[str], list[Record]]:
        names = []
        for _ in range(count):
            self.sequence += 1
            names.append(f"{writer}.{self.lives[writer]}.{self.sequence}")
        return names, [Record("events.1", b"k", json.dumps({"id": n}).encode(), 1.0) for n in names]

    @rule(writer=st.integers(0, WRITERS - 1), count=st.integers(1, 4),
          failure=st.sampled_from([None, None, None, None, "short", "full", "torn"]))
    def append(self, writer: int, count: int, failure: str | None) -> None:
        names, records = self._records(writer, count)
        try:
            with failing_write(failure) if failure else contextlib.nullcontext():
                self.writers[writer].append(records)
        except (LogFull, OSError):
            self.refused.update(names)  # answered 503: must never reach Kafka
            return
        assert failure is None
        self.accepted.update((n, (writer, self.lives[writer], int(n.rsplit(".", 1)[1]))) for n in names)

    @rule(writer=st.integers(0, WRITERS - 1))
    def roll(self, writer: int) -> None:
        self.writers[writer].seal()

    @rule(writer=st.integers(0, WRITERS - 1))
    def count(self, writer: int) -> None:
        """A worker counts what the log holds not yet delivered, as it does every send interval."""
        self.writers[writer].count()

    @rule(writer=st.integers(0, WRITERS - 1))
    def crash_writer(self, writer: int) -> None:
        """SIGKILL: its descriptors close, so its lock goes, and nothing else happens."""
        current = self.writers[writer]._current
        if current is not None:
            os.close(current.fd)
        self.writers[writer] = self._writer()
        self.lives[writer] += 1

    @rule()
    def crash_sender(self) -> None:
        for segment in self.sender.log.owned() + self.sender.log._undeleted:
            os.close(segment.fd)
        self.sender = self._sender()

    @rule(passes=st.integers(1, 3))
    def send(self, passes: int) -> None:
        for _ in range(passes):
            self.sender.step()

    @rule(hold=st.booleans())
    def kafka(self, hold: bool) -> None:
        producer = self.sender.producer
        if hold:
            producer.mode = "hold"
        else:
            producer.release()

    @rule(data=st.data())
    def damage(self, data: st.DataObject) -> None:
        """Flip one byte inside the body of one accepted event's record, wherever it is."""
        frames = []
        for path in segments(self.dir):
            content = path.read_bytes()
            offset = 8
            while True:
                record, _, end = decode(content, offset)
                if record is None:
                    break
                name = json.loads(record.value)["id"]
                if name in self.accepted:
                    frames.append((path, offset, end, name))
                offset = end
        if not frames:
            return
        path, offset, end, name = data.draw(st.sampled_from(frames))
        at = data.draw(st.integers(offset + 8, end - 1))
        fd = os.open(path, os.O_RDWR)  # not a writer's O_APPEND one: Linux appends a pwrite there
        os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0xFF]), at)
        os.close(fd)
        self.damaged.add(name)

    def delivered(self) -> list[str]:
        return [json.loads(value)["id"] for p in self.producers for _, _, value in p.sent]

    @invariant()
    def nothing_refused_reaches_kafka_and_each_writers_order_holds(self) -> None:
        if not hasattr(self, "dir"):
            return
        delivered = self.delivered()
        assert not self.refused & set(delivered)
        first: dict[str, int] = {}
        for name in delivered:
            first.setdefault(name, len(first))
        last: dict[tuple[int, int], int] = {}
        for name in sorted(first, key=first.__getitem__):
            writer, life, place = self.accepted[name]
            assert last.get((writer, life), 0) < place, f"{name} after a later event of its writer"
            last[writer, life] = place

    def teardown(self) -> None:
        if not hasattr(self, "dir"):
            return
        try:
            for writer in self.writers:
                writer.seal()  # the workers exit: the sender takes everything
            self.sender.producer.release()
            for _ in range(20):
                self.sender.step()
                if not segments(self.dir):
                    break
            self.nothing_refused_reaches_kafka_and_each_writers_order_holds()
            missing = set(self.accepted) - set(self.delivered()) - self.damaged
            assert not missing, f"answered 204, never delivered: {sorted(missing)}"
            assert segments(self.dir) == []
        finally:
            for segment in self.sender.log.owned() + self.sender.log._undeleted:
                os.close(segment.fd)
            shutil.rmtree(self.dir, ignore_errors=True)


LogMachine.TestCase.settings = settings(max_examples=int(os.environ.get("MODEL_EXAMPLES", 150)),  # more: a soak
                                        stateful_step_count=40, deadline=None)
TestLog = LogMachine.TestCase
