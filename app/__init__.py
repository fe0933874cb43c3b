"""The collector: an HTTP event-tracking service that queues events on Kafka."""
from __future__ import annotations

from flask import Flask

from . import collect, config, cors, debug, delivery, docs, errors, openapi, ops, proxy, registry, rejects
from .config import Settings
from .kafka_client import KAFKA, Clients

#: The parts that need only the app; their order is free (each reads the settings, and any other
#: part through its accessor when a request needs it).
PARTS = (errors, registry, cors, collect, rejects, ops, openapi, docs, proxy, debug)


def create_app(settings: Settings | None = None, clients: Clients = KAFKA) -> Flask:
    """Build the app on ``settings`` (default: read from the environment), its Kafka clients
    made by ``clients``."""
    app = Flask(__name__, static_folder=None)
    app.url_map.merge_slashes = False  # "/collect//1/1/event" is a 404, not a redirect to another path
    app.json.sort_keys = False  # type: ignore[attr-defined]  # answers keep their fields in the documented order
    config.init_app(app, settings or Settings.from_env())
    delivery.init_app(app, clients)
    for part in PARTS:
        part.init_app(app)
    return app
