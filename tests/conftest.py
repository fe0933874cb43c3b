"""Fixtures: the app on fake Kafka clients (unit tests); a real broker and gunicorn (integration).

Also the rule that keeps the two apart: a test that needs the broker, or lives in
tests/integration/, must be marked ``integration`` (``-m "not integration"`` leaves it out).
"""
from __future__ import annotations

import shutil
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
from tests.fakes import FAKE_KAFKA, FakeKafkaAdmin, FakeKafkaConsumer
from tests.helpers import VENDORS, Collector, replace_file, sent_by

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
    """The fake Kafka cluster, empty: the topics created through ``FakeKafkaAdmin``, and those missing;
    no records for ``FakeKafkaConsumer``."""
    FakeKafkaAdmin.reset()
    FakeKafkaConsumer.reset()
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
def vendors_file(tmp_path: Path) -> Path:
    """A registry file of account 1 and the vendors of ``VENDORS``."""
    path = tmp_path / "vendors.toml"
    replace_file(path, VENDORS)
    return path


@pytest.fixture
def with_vendors(make_app: Callable[..., Flask], vendors_file: Path) -> Flask:
    """An app on the registry of ``vendors_file``."""
    return make_app(COLLECTOR_REGISTRY=str(vendors_file))


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

@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium driven by Selenium; fails loudly where it is not installed."""
    CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's  # noqa: N806
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver "
                    "(make test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()
