"""The accounts, trackers and vendors the platform knows, from the TOML file ``COLLECTOR_REGISTRY``.

    [accounts.1]
    trackers = ["1", "2"]

    [accounts."3f2504e0-4f89-11d3-9a0c-0305e82c3301"]
    trackers = ["7"]

    [vendors."Vendor A"]
    products = ["Product 1", "Chat"]

    [vendors."Vendor B"]
    products = []        # any product of this vendor

Without a ``[vendors]`` table (or with an empty one) every vendor is accepted.

The file is read again when it changes (checked at most once per ``check_interval``, on a
request); a registry is swapped in whole, so no request sees a half-read one. Every worker
keeps a copy of the last good file it read in the spool directory (``KEPT``): a file that does
not parse is refused, and every worker of the host answers from that copy, the same one, even
a worker that never saw the good file.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from .config import get_settings
from .ids import canonical_id
from .logs import plural
from .vendors import Vendors

log = logging.getLogger(__name__)
EXTENSION = "collector.registry"


class RegistryError(ValueError):
    """The registry file cannot be used; the message names the file and the problem."""


Signature = tuple[int, int, int]  # a file's mtime, size and inode: a new one is a change
KEPT = "registry.last-good.toml"  # in the spool directory: the last good registry a worker of the host read


@dataclass(frozen=True)
class Known:
    """One reading of the registry: account id -> its tracker ids, all canonical; the vendors."""

    accounts: dict[str, frozenset[str]]
    vendors: Vendors  # empty: every vendor is accepted


def _canonical(path: str, what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{path}: {what} {value!r} must be a string")
    canonical = canonical_id(value)
    if canonical is None:
        raise RegistryError(f"{path}: {what} {value!r} must be a positive decimal number or a UUID")
    return canonical


def _bytes(path: str, label: str) -> bytes:
    """A file's bytes; ``label`` names it in a ``RegistryError``."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise RegistryError(f"{label}: {exc.strerror or exc}") from None


def _signature(path: str) -> Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def read(path: str) -> Known:
    """Read and check the registry file COLLECTOR_REGISTRY names; raises ``RegistryError``."""
    label = f"{path} (COLLECTOR_REGISTRY)"
    return parse(label, _bytes(path, label))


def parse(path: str, raw: bytes) -> Known:
    """Check a registry's text; ``path`` names it in a ``RegistryError``."""
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
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
    return Known(known, _vendors(path, data.get("vendors", {})))


def _name(path: str, what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{path}: {what} {value!r} must be a string")
    if not value.strip():  # an event's vendor and product may not be blank, so it could never match
        raise RegistryError(f"{path}: {what} {value!r} must not be blank")
    return value


def _vendors(path: str, vendors: Any) -> Vendors:
    """The ``[vendors]`` table, checked; names kept exactly as written."""
    if not isinstance(vendors, dict):
        raise RegistryError(f"{path}: needs a [vendors.\"<name>\"] table per vendor")
    known: Vendors = {}
    for name, vendor in vendors.items():
        _name(path, "vendor", name)
        products = vendor.get("products") if isinstance(vendor, dict) else None
        if not isinstance(products, list):
            raise RegistryError(f"{path}: vendor {name!r} needs products = [\"<name>\", ...] (or [] for any product)")
        known[name] = frozenset(_name(path, f"vendor {name!r}: product", p) for p in products)
    return known


class Registry:
    """The registry one process consults, reloaded when its file changes; while the file is
    broken, the last good one a worker of the host read (``kept``)."""

    def __init__(self, path: str, keep_dir: str | None = None, check_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Read ``path``; a broken one raises ``RegistryError``, unless a worker kept a good one in ``keep_dir``."""
        self.path = path
        self.kept = os.path.join(keep_dir, KEPT) if keep_dir else None
        self.check_interval = check_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._seen = _signature(path)  # the file's when last looked at (None: missing)
        self._kept: Signature | None = None  # the kept copy's, when last read or written
        self.broken = ""  # why the file is refused, while it is
        self._next_check = clock() + check_interval
        if not self._reload():  # a worker started while the file is broken: the others' registry, if kept
            if self.kept is None or not os.path.exists(self.kept) or not self._follow_kept():
                raise RegistryError(self.broken)
            log.error("registry refused, answering from the last good one: %s", self.broken)

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
        now = self.clock()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + self.check_interval
            if (seen := _signature(self.path)) != self._seen:  # once a change: a broken file is logged once
                self._seen = seen
                if self._reload():
                    log.info("registry reloaded from %s: %s, %s", self.path,
                             plural(len(self.known.accounts), "account"), plural(len(self.known.vendors), "vendor"))
                    return
                log.error("registry refused, answering from the last good one: %s", self.broken)
            if self.broken and self.kept is not None and _signature(self.kept) != self._kept:
                self._follow_kept()
        finally:
            self._lock.release()

    def _reload(self) -> bool:
        """Read the file; if it is good, take it and keep a copy for the other workers."""
        label = f"{self.path} (COLLECTOR_REGISTRY)"
        try:
            raw = _bytes(self.path, label)
            self.known = parse(label, raw)
        except RegistryError as exc:
            self.broken = str(exc)
            return False
        self.broken = ""
        if self.kept is not None:
            try:  # renamed into place: a worker reads the whole copy or the one before
                os.makedirs(os.path.dirname(self.kept) or ".", exist_ok=True)
                tmp = os.path.join(os.path.dirname(self.kept), f".{KEPT}.{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    f.write(raw)
                os.replace(tmp, self.kept)
                self._kept = _signature(self.kept)
            except OSError as exc:
                log.warning("registry not kept in %s (%s): while the file is broken, workers may differ",
                            self.kept, exc.strerror or exc)
        return True

    def _follow_kept(self) -> bool:
        """While the file is broken: take the copy of the last good one (perhaps another worker's)."""
        assert self.kept is not None
        try:
            self._kept = _signature(self.kept)
            self.known = parse(self.kept, _bytes(self.kept, self.kept))
        except RegistryError as exc:
            log.error("the last good registry cannot be read (%s)", exc)
            return False
        return True


def init_app(app: Flask) -> None:
    """Give ``app`` the registry of COLLECTOR_REGISTRY, if set; raises ``RegistryError``."""
    settings = get_settings(app)
    app.extensions[EXTENSION] = Registry(settings.registry, settings.spool_dir) if settings.registry else None


def get_registry(app: Flask | None = None) -> Registry | None:
    """The registry of ``app`` (default: the current app); None: every well-formed id is accepted."""
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]
