"""The collector: an HTTP event-tracking service that queues events on Kafka."""
from __future__ import annotations

from flask import Flask

from . import collect, config, cors, delivery, docs, errors, openapi, ops, proxy, registry
from .config import Settings
from .kafka_client import KAFKA, Clients


def create_app(settings: Settings | None = None, clients: Clients = KAFKA) -> Flask:
    """Build the app on ``settings`` (default: read from the environment), its Kafka clients
    made by ``clients``. Every part reads what it needs when it needs it: their order is free."""
    app = Flask(__name__, static_folder=None)
    app.url_map.merge_slashes = False  # "/collect//1/1/event" is a 404, not a redirect to another path
    config.init_app(app, settings or Settings.from_env())
    for part in (errors, registry, cors, collect, ops, openapi, docs, proxy):
        part.init_app(app)
    delivery.init_app(app, clients)
    return app
