"""The accounts and trackers the platform knows, from the TOML file ``COLLECTOR_REGISTRY``.

    [accounts.1]
    trackers = ["1", "2"]

    [accounts."3f2504e0-4f89-11d3-9a0c-0305e82c3301"]
    trackers = ["7"]

The file is read again when it changes (checked at most once per ``check_interval``); a
registry is swapped in whole, so no request sees a half-read one; a file that does not
parse keeps the last good registry and logs an error.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from typing import Any

from .schemas import canonical_id

log = logging.getLogger(__name__)
REGISTRY = "collector.registry"


class RegistryError(ValueError):
    """The registry file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Known:
    """One reading of the registry: account id -> its tracker ids, all canonical."""

    accounts: dict[str, frozenset[str]]
    signature: tuple[int, int, int]


def _canonical(path: str, what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{path}: {what} {value!r} must be a string")
    canonical = canonical_id(value)
    if canonical is None:
        raise RegistryError(f"{path}: {what} {value!r} must be a positive decimal number or a UUID")
    return canonical


def read(path: str) -> Known:
    """Read and check the registry file; raises ``RegistryError``."""
    try:
        stat = os.stat(path)
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    accounts = data.get("accounts")
    if not isinstance(accounts, dict):
        raise RegistryError(f"{path}: needs an [accounts.<id>] table per account")
    known: dict[str, frozenset[str]] = {}
    for aid, account in accounts.items():
        account_id = _canonical(path, "account", aid)
        trackers = account.get("trackers") if isinstance(account, dict) else None
        if not isinstance(trackers, list):
            raise RegistryError(f"{path}: account {aid} needs trackers = [\"<id>\", ...]")
        known[account_id] = frozenset(_canonical(path, f"account {aid}: tracker", t) for t in trackers)
    return Known(known, (stat.st_mtime_ns, stat.st_size, stat.st_ino))


class Registry:
    """The registry one process consults, reloaded when its file changes."""

    def __init__(self, path: str, check_interval: float = 1.0) -> None:
        self.path = path
        self.check_interval = check_interval
        self.known = read(path)
        self._next_check = time.monotonic() + check_interval
        self._lock = threading.Lock()

    def unknown(self, account_id: str, tracker_id: str) -> dict[str, list[str]] | None:
        """Which id the registry does not list (as the errors of a 404), or None."""
        self._maybe_reload()
        trackers = self.known.accounts.get(account_id)
        if trackers is None:
            return {"aid": [f"account {account_id} is not registered"]}
        if tracker_id not in trackers:
            return {"tid": [f"tracker {tracker_id} is not registered for account {account_id}"]}
        return None

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + self.check_interval
            try:
                stat = os.stat(self.path)
            except OSError as exc:
                log.error("registry %s unreadable, keeping the last good one: %s", self.path, exc.strerror)
                return
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) == self.known.signature:
                return
            try:
                self.known = read(self.path)
            except RegistryError as exc:
                log.error("registry not reloaded, keeping the last good one: %s", exc)
                self.known = Known(self.known.accounts, (stat.st_mtime_ns, stat.st_size, stat.st_ino))
                return
            log.info("registry reloaded from %s: %d accounts", self.path, len(self.known.accounts))
        finally:
            self._lock.release()
