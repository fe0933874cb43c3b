"""The rejects stream: each event the collector refuses also becomes a record on one topic
(COLLECTOR_REJECTS_TOPIC), written to the log like an event, so the answer never waits on
Kafka; rate-limited, so a flood of bad requests floods neither Kafka nor the log."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, NamedTuple

import orjson
from flask import Flask, Request, current_app

from . import metrics
from .body import peek
from .config import Settings, get_settings
from .delivery import get_pipeline
from .event import now_rfc3339
from .logs import Throttle
from .segment import Record

EXTENSION = "collector.rejects"
failing = Throttle(logging.getLogger(__name__))  # a bug met on every refusal: logged once a minute
CHARS = 64  # of an id as sent, in the key and the record: ids are at most 36 characters
TEXT = 1024  # of a message, a header or the field errors as JSON, in the record
PEEK_MS = 1000  # the longest a refused request's unread body is waited for


class Refusal(NamedTuple):
    """One refused event: the request's, or a batch's item (its ``position`` and its JSON ``item``)."""

    message: str
    errors: dict[str, Any] | None
    position: int | None = None  # its index in the batch
    item: Any = None


class Limiter:
    """Token buckets: one for all of this worker's rejects, one per account (``collect.bucket``). Each of
    the host's workers takes an equal share of the host's rates, so that together they publish
    no more than the settings allow; a bucket holds one second's share, or one reject at least."""

    MOST = 1024  # account buckets kept before the full ones are dropped (a full one is as good as none)

    def __init__(self, per_second: float, per_account: float) -> None:
        self.rate, self.account_rate = per_second, per_account
        self.size, self.account_size = max(1.0, per_second), max(1.0, per_account)
        self._all = (self.size, 0.0)  # (tokens, when last counted)
        self._accounts: dict[str, tuple[float, float]] = {}
        self._prune_at = 0.0
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
            if len(self._accounts) > self.MOST and now >= self._prune_at:  # at most once a second: only
                self._prune_at = now + 1.0  # published rejects spend tokens, so few buckets are not full
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
        self.timeout_ms = min(settings.body_timeout_ms, PEEK_MS)
        self.limiter = Limiter(settings.rejects_per_second * share, settings.rejects_per_account * share)

    def refused(self, req: Request, bucket: str, aid: str, tid: str, status: int,
                refusals: list[Refusal]) -> None:
        """Publish what was refused (the request, or a batch's refused items), each unless the rate
        limit for ``bucket`` (the account's) samples it out, in one append unless the log cannot
        keep them. Either way the caller's answer stays as it is."""
        try:
            self._refused(req, bucket, aid, tid, status, refusals)
        except Exception as exc:  # noqa: BLE001 - a bug here must not turn the caller's 4xx into a 500
            failing.error("a reject could not be published: %r", exc)

    def _refused(self, req: Request, bucket: str, aid: str, tid: str, status: int, refusals: list[Refusal]) -> None:
        if req.args.get("validate") == "true":  # a check: its caller reads the answer, and nothing is queued
            return
        now = time.monotonic()
        kept = [refusal for refusal in refusals if self.limiter.take(bucket, now)]
        metrics.count(metrics.REJECTS_SAMPLED_OUT, len(refusals) - len(kept))
        if not kept:
            return
        key = aid[:CHARS].encode(errors="replace")
        records = [Record(self.topic, key, self.value(req, aid, tid, status, refusal), time.time()) for refusal in kept]
        published = get_pipeline().keep(records)
        metrics.count(metrics.REJECTS_PUBLISHED if published else metrics.REJECTS_DROPPED, len(kept))

    def value(self, req: Request, aid: str, tid: str, status: int, refusal: Refusal) -> bytes:
        """A reject's record value; every field a caller chooses is cut to its bound."""
        environ = req.environ
        record: dict[str, Any] = {
            "received_at": now_rfc3339(), "aid": aid[:CHARS], "tid": tid[:CHARS], "path": req.path[:4 * CHARS],
            "status": status, "message": refusal.message[:TEXT], "errors": refusal.errors or None,
            "index": refusal.position, "user_agent": cut(environ.get("HTTP_USER_AGENT")),
            "origin": cut(environ.get("HTTP_ORIGIN")), "ip": environ.get("REMOTE_ADDR")}
        if len(errors := orjson.dumps(record["errors"], default=str)) > TEXT:  # an event of many bad fields
            record["errors"] = {"_schema": [errors[:TEXT].decode(errors="replace") + "... (cut)"]}
        if self.excerpt:
            if refusal.position is None:
                data, size = peek(req, self.excerpt, self.timeout_ms)
            else:
                data = orjson.dumps(refusal.item)
                size = len(data)
            record["body"] = None if data is None else data[:self.excerpt].decode(errors="replace")
            record["body_bytes"] = size
        return orjson.dumps(record, default=str)


def cut(value: str | None) -> str | None:
    """A header's value, to its bound."""
    return value if value is None or len(value) <= TEXT else value[:TEXT] + "... (cut)"


def init_app(app: Flask) -> None:
    """Give ``app`` its rejects stream."""
    app.extensions[EXTENSION] = Rejects(get_settings(app))


def get_rejects(app: Flask | None = None) -> Rejects:
    """The rejects stream of ``app`` (default: the current app)."""
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]
