"""Background threads that are watched, and whether this worker is ready.

Every background thread runs under ``Supervisor.start``: if it dies, the death is logged,
``/readyz`` reports it for ``COLLECTOR_READY_MAX_AGE_MS``, and the thread runs again (after
0.5 s, doubled at each death in a row up to 30 s).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .kafka_client import went_away

log = logging.getLogger(__name__)


class Supervisor:
    """Starts named threads and starts them again when they die, later after each death in a row."""

    RESTART_S = 0.5  # the wait before the first restart, doubled at each death in a row
    MAX_RESTART_S = 30.0
    HEALTHY_S = 60.0  # a thread that ran this long before it died counts as a first death again

    def __init__(self, visible_s: float, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], bool] | None = None) -> None:
        self.visible_s = visible_s
        self.stopping = threading.Event()
        self.clock = clock
        self.wait = wait or self.stopping.wait  # True: stop instead (so a stop never waits out a back-off)
        self._deaths: dict[str, tuple[float, str]] = {}  # name -> (when, why); guarded by _lock
        self._threads: dict[str, threading.Thread] = {}  # guarded by _lock
        self._lock = threading.Lock()

    def start(self, name: str, target: Callable[[], None]) -> None:
        """Run ``target`` in a thread named ``name``, again after every death until ``stop``."""
        def watched() -> None:
            delay = self.RESTART_S
            while True:
                began = self.clock()
                try:
                    target()
                    return
                except BaseException as exc:  # noqa: BLE001 - even a SystemExit sent to the thread
                    if self.stopping.is_set():
                        return
                    if self.clock() - began >= self.HEALTHY_S:
                        delay = self.RESTART_S
                    log.exception("the %s thread died; it starts again in %.1f s", name, delay)
                    with self._lock:
                        self._deaths[name] = (time.monotonic(), f"the {name} thread died ({exc!r}) and was restarted")
                if self.wait(delay):
                    return
                delay = min(delay * 2, self.MAX_RESTART_S)  # one that dies at once must not spin

        thread = threading.Thread(target=watched, name=f"collector-{name}", daemon=True)
        with self._lock:
            self._threads[name] = thread
        thread.start()

    def thread(self, name: str) -> threading.Thread:
        with self._lock:
            return self._threads[name]

    def problem(self) -> str | None:
        """The latest death still in view, or a thread that is gone."""
        now = time.monotonic()
        with self._lock:
            for name, thread in self._threads.items():
                if not thread.is_alive() and not self.stopping.is_set():
                    return f"the {name} thread is not running"
            recent = [(when, why) for when, why in self._deaths.values() if now - when <= self.visible_s]
        return max(recent)[1] if recent else None

    def stop(self, timeout: float) -> None:
        """Let every thread end and wait for them, at most ``timeout`` seconds in all."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class Probe:
    """Asks Kafka for its cluster's metadata every second (owns its admin client): readiness needs
    an answer, and ``outages`` counts the times Kafka that had answered went away (the sender then
    starts over)."""

    def __init__(self, admin_factory: Callable[..., Any], configs: dict[str, Any], ready_s: float) -> None:
        self.admin_factory = admin_factory
        self.configs = configs
        self.ready_s = ready_s
        self.heard = 0.0  # monotonic time of Kafka's last answer to a probe
        self.problem = "no answer from Kafka yet"
        self.outages = 0  # written by the probe thread only
        self._away = False
        self._admin: Any = None

    def run(self, stopping: threading.Event) -> None:
        while True:
            self.ask()
            if stopping.wait(min(1.0, self.ready_s / 4)):
                break
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()

    def ask(self) -> None:
        try:
            if self._admin is None:
                self._admin = self.admin_factory(**self.configs)
            self._admin.describe_cluster()
        except Exception as exc:  # noqa: BLE001 - what readiness reports
            self.problem = f"Kafka does not answer: {exc!r}"
            # Only a Kafka that answered before can go away: one never there is no outage to start over from.
            if self.heard and not self._away and went_away(self.configs["bootstrap_servers"]):
                self._away = True
                self.outages += 1
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
            return
        self._away = False
        self.heard = time.monotonic()


def unready(supervisor: Supervisor, probe: Probe, heard: float, beat: float, ready_s: float) -> str | None:
    """Why this worker is not ready, or None: a thread died lately, the sender stopped, or Kafka
    has not answered since the worker started or for ``ready_s``."""
    if problem := supervisor.problem():
        return problem
    now = time.monotonic()
    if beat and now - beat > max(ready_s, 5.0):
        return f"the sender has not run for {now - beat:.0f} s"
    last = max(heard, probe.heard)
    if last == 0:
        return f"no answer from Kafka since this worker started; {probe.problem}"
    if now - last > ready_s:
        return f"no answer from Kafka for {now - last:.0f} s; {probe.problem}"
    return None
