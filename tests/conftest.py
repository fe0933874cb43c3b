"""Fixtures: the app on fake Kafka clients (unit tests); a real broker and gunicorn (integration).

Also the rule that keeps the two apart: a test that needs the broker, or lives in
tests/integration/, must be marked ``integration`` (``-m "not integration"`` leaves it out).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from app.delivery import get_pipeline
from dev.broker import Broker
from dev.events import read_records
from tests.fakes import FAKE_KAFKA, FakeKafkaAdmin
from tests.helpers import Collector, sent_by

INTEGRATION = Path(__file__).resolve().parent / "integration"


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything: every test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a test that needs the broker or lives in tests/integration/ without the
    ``integration`` marker."""
    unmarked = [item.nodeid for item in items
                if ("broker" in getattr(item, "fixturenames", ()) or INTEGRATION in Path(item.path).parents)
                and item.get_closest_marker("integration") is None]
    if unmarked:
        raise pytest.UsageError(
            "these tests need a real broker or gunicorn (they use the broker fixture or live in tests/integration/) "
            "but are not marked integration; add pytestmark = pytest.mark.integration:\n  " + "\n  ".join(unmarked))


# -- unit: the app on fake Kafka clients ---------------------------------------------------------

@pytest.fixture
def fake_cluster() -> type[FakeKafkaAdmin]:
    """The fake Kafka cluster, empty: the topics created through ``FakeKafkaAdmin``, and those missing."""
    FakeKafkaAdmin.reset()
    return FakeKafkaAdmin


@pytest.fixture
def make_app(tmp_path: Path, fake_cluster: type[FakeKafkaAdmin]) -> Iterator[Callable[..., Flask]]:
    """Build apps on fake Kafka clients, with a spool under ``tmp_path``; closes them after."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        env = {"COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"), "COLLECTOR_SPOOL_REPLAY_MS": "50",
               "COLLECTOR_SENDER": "worker", **{k: str(v) for k, v in config.items()}}
        app = create_app(Settings.from_env(env), FAKE_KAFKA)
        app.testing = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        get_pipeline(app).close()


@pytest.fixture
def unwritable_spool(tmp_path: Path) -> str:
    """A spool directory that cannot be made, even by root: its parent is a file."""
    parent = tmp_path / "a-file"
    parent.write_text("")
    return str(parent / "spool")


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sent(app: Flask) -> Callable[[], list[dict[str, Any]]]:
    """``sent_by`` the ``app`` fixture."""
    return lambda: sent_by(app)


# -- integration: a real broker, a real gunicorn ------------------------------------------

@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    with Broker() as b:
        yield b


@pytest.fixture
def collector(broker: Broker, tmp_path: Path) -> Iterator[Collector]:
    c = Collector(broker.servers, tmp_path).start()
    yield c
    c.stop()


@pytest.fixture
def read_topic(broker: Broker) -> Callable[..., list[Any]]:
    """Read ``count`` records of a topic from the broker, polling up to ``timeout``."""

    def read(topic: str, count: int | None = None, timeout: float = 20.0) -> list[Any]:
        return read_records(broker.servers, topic, count=count, timeout=timeout)

    return read
