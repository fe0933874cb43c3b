"""The collector: an HTTP event-tracking service that queues events on Kafka."""
from __future__ import annotations

from typing import Any

from flask import Flask

from . import collect, errors
from .config import from_env
from .producer import producer


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment, then ``config`` over them."""
    app = Flask(__name__)
    app.config.update(from_env())
    app.config.update(config or {})
    app.config["MAX_CONTENT_LENGTH"] = app.config["COLLECTOR_MAX_BODY_BYTES"]
    errors.register_errors(app)
    producer.init_app(app)
    app.register_blueprint(collect.bp)
    return app
