"""The rejects stream: each event the collector refuses also becomes a record on one topic
(COLLECTOR_REJECTS_TOPIC), written to the log like an event, so the answer never waits on
Kafka; rate-limited, so a flood of bad requests floods neither Kafka nor the log."""
from __future__ import annotations

import threading
import time
from typing import Any

import orjson
from flask import Flask, Request, current_app

from . import metrics
from .body import peek
from .config import Settings, get_settings
from .delivery import get_pipeline
from .event import now_rfc3339
from .segment import Record

EXTENSION = "collector.rejects"
KEY_CHARS = 64  # of an account id as sent, for its bucket: ids are at most 36 characters


class Limiter:
    """Token buckets: one for all of this worker's rejects, one per account id as sent. Each of
    the host's workers takes an equal share of the host's rates, so that together they publish
    no more than the settings allow; a bucket holds one second's share, or one reject at least."""

    MOST = 1024  # account buckets kept before the full ones are dropped (a full one is as good as none)

    def __init__(self, per_second: float, per_account: float) -> None:
        self.rate, self.account_rate = per_second, per_account
        self.size, self.account_size = max(1.0, per_second), max(1.0, per_account)
        self._all = (self.size, 0.0)  # (tokens, when last counted)
        self._accounts: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()  # the buckets: request threads (one in a sync worker, more in gthread)

    def take(self, account: str, now: float) -> bool:
        """Whether a reject for ``account`` may be published at ``now`` (monotonic seconds); if so, count it."""
        if self.rate <= 0:
            return False
        with self._lock:
            total = self._level(self._all, self.rate, self.size, now)
            mine = self._level(self._accounts.get(account, (self.account_size, now)), self.account_rate,
                               self.account_size, now)
            if total < 1 or mine < 1:
                self._all = (total, now)
                return False
            self._all = (total - 1, now)
            self._accounts[account] = (mine - 1, now)
            if len(self._accounts) > self.MOST:  # only published rejects spend tokens: few buckets are not full
                self._accounts = {a: b for a, b in self._accounts.items()
                                  if self._level(b, self.account_rate, self.account_size, now) < self.account_size}
            return True

    @staticmethod
    def _level(bucket: tuple[float, float], rate: float, size: float, now: float) -> float:
        tokens, at = bucket
        return min(size, tokens + max(0.0, now - at) * rate)


class Rejects:
    """This worker's way from a refused event to the rejects topic."""

    def __init__(self, settings: Settings) -> None:
        share = 1 / settings.workers
        self.topic = settings.rejects_topic
        self.excerpt = settings.rejects_excerpt_bytes
        self.timeout_ms = settings.body_timeout_ms
        self.limiter = Limiter(settings.rejects_per_second * share, settings.rejects_per_account * share)

    def refused(self, req: Request, aid: str, tid: str, status: int, message: str,
                errors: dict[str, Any] | None, item: Any = None, index: int | None = None) -> None:
        """Publish what was refused, unless the rate limit samples it out or the log cannot keep it:
        either way the caller's answer stays as it is."""
        if req.args.get("validate") == "true":  # a check: its caller reads the answer, and nothing is queued
            return
        if not self.limiter.take(aid[:KEY_CHARS], time.monotonic()):
            metrics.count(metrics.REJECTS_SAMPLED_OUT)
            return
        environ = req.environ
        record: dict[str, Any] = {
            "received_at": now_rfc3339(), "aid": aid, "tid": tid, "path": environ.get("PATH_INFO"), "status": status,
            "message": message, "errors": errors or None, "index": index, "user_agent": environ.get("HTTP_USER_AGENT"),
            "origin": environ.get("HTTP_ORIGIN"), "ip": environ.get("REMOTE_ADDR")}
        if self.excerpt:
            data, size = (orjson.dumps(item), None) if index is not None else peek(req, self.excerpt, self.timeout_ms)
            record["body"] = data[:self.excerpt].decode(errors="replace") if data is not None else None
            record["body_bytes"] = len(data) if index is not None and data is not None else size
        value = orjson.dumps(record, default=str)
        kept = get_pipeline().keep([Record(self.topic, aid.encode(errors="replace"), value, time.time())])
        metrics.count(metrics.REJECTS_PUBLISHED if kept else metrics.REJECTS_DROPPED)


def init_app(app: Flask) -> None:
    """Give ``app`` its rejects stream."""
    app.extensions[EXTENSION] = Rejects(get_settings(app))


def get_rejects(app: Flask | None = None) -> Rejects:
    """The rejects stream of ``app`` (default: the current app)."""
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]
