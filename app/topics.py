"""Account topics: created through the admin client before their first event, and again when
they vanish (a broker that lost them); never left to a broker's auto-creation.

Owned by the sender thread: no other thread calls it.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from .kafka_client import create_topic

log = logging.getLogger(__name__)


class Topics:
    """The topics this process knows exist, and the admin client that makes the others."""

    RECHECK_S = 1.0  # the least time between two creations of one topic

    def __init__(self, admin_factory: Callable[..., Any], configs: dict[str, Any],
                 partitions: int, replication: int) -> None:
        self.admin_factory = admin_factory
        self.configs = configs
        self.partitions = partitions
        self.replication = replication
        self._admin: Any = None
        self._known: set[str] = set()
        self._tried: dict[str, float] = {}  # topic -> when its creation was last tried

    def ensure(self, topic: str) -> bool:
        """True when ``topic`` is known to exist (creating it if need be); False to retry later."""
        if topic in self._known:
            return True
        now = time.monotonic()
        if now - self._tried.get(topic, 0.0) < self.RECHECK_S:
            return False
        self._tried[topic] = now
        try:
            if self._admin is None:
                self._admin = self.admin_factory(**self.configs)
            if create_topic(self._admin, topic, self.partitions, self.replication):
                log.info("topic %s created with %d partitions", topic, self.partitions)
        except Exception as exc:  # noqa: BLE001 - no broker, no right: its events wait and retry
            log.warning("topic %s could not be created (%r): its events wait", topic, exc)
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
            return False
        self._known.add(topic)
        return True

    def forget(self, topic: str | None = None) -> None:
        """``topic`` (default: every one) may have vanished: check it (and create it again) before its next send."""
        if topic is None:
            self._known.clear()
        else:
            self._known.discard(topic)

    def close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
