"""The collector: an HTTP event-tracking service that queues events on Kafka."""
from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import collect, docs, errors, openapi, ops
from .config import from_env
from .cors import register_cors
from .delivery import delivery
from .registry import REGISTRY, Registry
from .schemas import Limits


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment, then ``config`` over them."""
    app = Flask(__name__, static_folder=None)
    app.url_map.merge_slashes = False  # "/collect//1/1/event" is a 404, not a redirect to another path
    app.config.update(from_env())
    app.config.update(config or {})
    app.config["COLLECTOR_LIMITS"] = Limits(
        app.config["COLLECTOR_MAX_DEPTH"], app.config["COLLECTOR_MAX_FIELDS"],
        app.config["COLLECTOR_MAX_STRING"], app.config["COLLECTOR_MAX_KEY"],
    )
    errors.register_errors(app)
    if app.config["COLLECTOR_REGISTRY"]:
        app.extensions[REGISTRY] = Registry(app.config["COLLECTOR_REGISTRY"])
    register_cors(app)
    delivery.init_app(app)
    collect.init_app(app)
    ops.register_ops(app)
    app.register_blueprint(openapi.bp)
    docs.init_app(app)
    if hops := app.config["COLLECTOR_PROXY_HOPS"]:
        # Trust X-Forwarded-For for exactly this many proxies (nginx: 1): the address the
        # nearest trusted proxy saw becomes request.remote_addr, and context.ip.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]
    return app

