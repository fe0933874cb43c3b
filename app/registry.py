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

The file is read again when it changes (checked at most once per ``check_interval``); a
registry is swapped in whole, so no request sees a half-read one; a file that does not
parse keeps the last good registry and logs an error.
"""
from __future__ import annotations

import difflib
import functools
import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass, replace
from typing import Any

from flask import Flask, current_app

from .config import get_settings
from .ids import canonical_id

log = logging.getLogger(__name__)
EXTENSION = "collector.registry"


class RegistryError(ValueError):
    """The registry file cannot be used; the message names the file and the problem."""


#: Vendor name -> its product names (empty: any product); names exactly as the platform stores them.
Vendors = dict[str, frozenset[str]]


@dataclass(frozen=True)
class Known:
    """One reading of the registry: account id -> its tracker ids, all canonical; the vendors."""

    accounts: dict[str, frozenset[str]]
    vendors: Vendors  # empty: every vendor is accepted
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
    return Known(known, _vendors(path, data.get("vendors", {})), (stat.st_mtime_ns, stat.st_size, stat.st_ino))


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


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


@functools.lru_cache(maxsize=256)
def not_registered(name: str, registered: frozenset[str]) -> str:
    """Why ``name`` is refused: not registered, and the registered name it is close to, if one is."""
    # Case and spacing first, by folding both sides: difflib alone scores "vendor a" against
    # "Vendor A" at 0.75, below a cutoff strict enough not to suggest unrelated names. Then
    # typos, by difflib on the folded names. Only a refused event pays for this (about 0.4 ms
    # against 30 vendors), and a back end repeating one misspelt name pays once: the cache.
    folded = {_fold(n): n for n in sorted(registered)}
    key = _fold(name)
    close = [key] if key in folded else difflib.get_close_matches(key, folded, n=1, cutoff=0.8)
    return f'is not registered (did you mean "{folded[close[0]]}"?)' if close else "is not registered"


def unregistered(vendors: Vendors, vendor: str, product: str) -> dict[str, list[str]] | None:
    """Which of an event's vendor and product ``vendors`` does not list (as the errors of a 400), or None."""
    products = vendors.get(vendor)
    if products is None:
        return {"vendor": [not_registered(vendor, frozenset(vendors))]} if vendors else None
    if products and product not in products:
        return {"product": [not_registered(product, products)]}
    return None


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
                self.known = replace(self.known, signature=(stat.st_mtime_ns, stat.st_size, stat.st_ino))
                return
            log.info("registry reloaded from %s: %d accounts, %d vendors", self.path, len(self.known.accounts),
                     len(self.known.vendors))
        finally:
            self._lock.release()


def init_app(app: Flask) -> None:
    """Give ``app`` the registry of COLLECTOR_REGISTRY, if set; raises ``RegistryError``."""
    path = get_settings(app).registry
    app.extensions[EXTENSION] = Registry(path) if path else None


def get_registry(app: Flask | None = None) -> Registry | None:
    """The registry of ``app`` (default: the current app); None: every well-formed id is accepted."""
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]
