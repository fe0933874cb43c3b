"""The proxies in front: whose ``X-Forwarded-For`` to trust (COLLECTOR_PROXY_HOPS)."""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import get_settings


def init_app(app: Flask) -> None:
    """Trust ``X-Forwarded-For`` for exactly COLLECTOR_PROXY_HOPS proxies (nginx: 1): the address
    the nearest trusted proxy saw becomes ``request.remote_addr``, and the event's ``context.ip``."""
    if hops := get_settings(app).proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]
