"""Account topics: created through the admin client before their first event, and again when
they vanish (a broker that lost them); never left to a broker's auto-creation.

Owned by the sender thread: no other thread calls it.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Container
from typing import Any

from .kafka_client import create_topics
from .logs import Throttle, plural

log = logging.getLogger(__name__)


class Topics:
    """The topics this process knows exist, and the admin client that makes the others."""

    RECHECK_S = 1.0  # the least time between two creations of one topic
    CONFIRM_S = 0.5  # a topic the producer's metadata still lacks after this is created
    IDLE_S = 300.0  # a topic without events this long is forgotten: checked anew when they come back
    MOST = 200  # topics created in one request: thousands at once timed out on a busy broker, every time

    def __init__(self, admin_factory: Callable[..., Any], configs: dict[str, Any],
                 partitions: int, replication: int) -> None:
        self.admin_factory = admin_factory
        self.configs = configs
        self.partitions = partitions
        self.replication = replication
        self._admin: Any = None
        self._known: set[str] = set()
        self._tried: dict[str, float] = {}  # topic -> when its creation was last tried
        self._awaited: dict[str, float] = {}  # topic -> since when the producer's metadata is awaited
        self._idle: dict[str, float] = {}  # topic -> since when it has had nothing to send
        self._sweep_at = 0.0
        self._repeated = Throttle(log)  # without Kafka, the same warnings come every second

    def __contains__(self, topic: str) -> bool:
        return topic in self._known

    def ensure(self, topics: list[str]) -> None:
        """Create those of ``topics`` not known to exist, ``MOST`` in one request (each at most once a
        second, so that the others take their turn)."""
        now = time.monotonic()
        wanted = [t for t in topics if t not in self._known and now - self._tried.get(t, 0.0) >= self.RECHECK_S]
        wanted = wanted[:self.MOST]
        if not wanted:
            return
        self._tried.update(dict.fromkeys(wanted, now))
        try:
            if self._admin is None:
                self._admin = self.admin_factory(**self.configs)
            answers = create_topics(self._admin, wanted, self.partitions, self.replication)
        except Exception as exc:  # noqa: BLE001 - no broker: their events wait and retry
            self._repeated.warning("%s not checked (%r); the events wait", plural(len(wanted), "topic"), exc)
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
            return
        for topic, problem in answers.items():
            if problem is None:
                self._known.add(topic)
            else:  # not authorized, invalid: the sends that follow fail, and say why
                self._repeated.warning("topic %s could not be created (%s); its events wait", topic, problem)

    def awaited(self, topics: list[str], now: float) -> None:
        """``topics`` are wanted and the producer's metadata lacks them. It shows every topic
        that exists: create those it still lacks after ``CONFIRM_S``."""
        self._awaited = {t: self._awaited.get(t, now) for t in topics}
        self.ensure([t for t, since in self._awaited.items() if now - since > self.CONFIRM_S])

    def overdue(self, topic: str, now: float, max_block_s: float) -> bool:
        """Whether the metadata of ``topic`` is awaited past ``max_block_s`` (then waited for anew)."""
        if now - self._awaited[topic] <= max_block_s + self.CONFIRM_S:
            return False
        self._awaited[topic] = now
        return True

    def forget(self, topic: str | None = None) -> None:
        """``topic`` (default: every one) may have vanished: check it (and create it again) before its next send."""
        if topic is None:
            for seen in (self._known, self._tried, self._awaited, self._idle):
                seen.clear()
        else:
            self._known.discard(topic)

    def idle(self, topics: list[str], now: float) -> None:
        """``topics`` have had nothing to send since ``now``."""
        self._idle.update(dict.fromkeys(topics, now))

    def expired(self, now: float, active: Container[str]) -> set[str]:
        """Forget the topics idle for ``IDLE_S`` and not ``active`` again, and return them."""
        # Else 100,000 accounts each seen once would stay for good. Looked for every tenth of IDLE_S.
        if now < self._sweep_at:
            return set()
        self._sweep_at = now + self.IDLE_S / 10
        gone = {t for t, since in self._idle.items() if now - since > self.IDLE_S and t not in active}
        self._idle = {t: since for t, since in self._idle.items() if t not in gone and t not in active}
        for topic in gone:
            self._known.discard(topic)
            self._tried.pop(topic, None)
            self._awaited.pop(topic, None)
        return gone

    def close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
