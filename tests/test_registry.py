"""The registry (app/registry.py): unknown accounts and trackers are 404s, unregistered vendors and
products 400s; the file is reloaded when it changes, and a broken one stops the start."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.registry import Registry, RegistryError
from tests.fakes import FakeKafkaAdmin
from tests.helpers import EVENT, ONE_ACCOUNT, VENDORS, replace_file, sent_by, vendor_event, wait_until

UUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry.toml"
    replace_file(path, f'[accounts.1]\ntrackers = ["1", "2"]\n\n[accounts."{UUID.upper()}"]\ntrackers = ["07"]\n')
    return path


@pytest.fixture
def registered(make_app, registry_file):
    return make_app(COLLECTOR_REGISTRY=str(registry_file), COLLECTOR_TOPIC_PARTITIONS=3,
                    COLLECTOR_TOPIC_REPLICATION=1)


@pytest.mark.parametrize(("path", "field", "message"), [
    ("/collect/5/1/event", "aid", "account 5 is not registered"),
    ("/collect/1/3/event", "tid", "tracker 3 is not registered for account 1"),
    (f"/collect/{UUID}/1/event", "tid", f"tracker 1 is not registered for account {UUID}"),
])
def test_unknown_ids_are_404_and_touch_no_topic(registered, path, field, message):
    client = registered.test_client()
    response = client.post(path, json=EVENT)
    assert response.status_code == 404
    assert response.get_json() == {"code": 404, "message": f"no such collect path: {message}",
                                   "errors": {field: [message]}}
    assert sent_by(registered) == []
    assert FakeKafkaAdmin.topics == {}


@pytest.mark.parametrize("path", ["/collect/1/2/event", f"/collect/{UUID}/7/event", "/collect/001/1/event"])
def test_registered_ids_are_tracked_and_their_topic_created(registered, path):
    FakeKafkaAdmin.only_created = True  # a cluster without the account's topic yet
    assert registered.test_client().post(path, json=EVENT).status_code == 204
    [record] = sent_by(registered)
    assert FakeKafkaAdmin.topics == {record["topic"]: (3, 1)}


def test_the_registry_reloads_when_its_file_changes(registered, registry_file, caplog):
    caplog.set_level(logging.INFO, logger="app.registry")
    client = registered.test_client()
    assert client.post("/collect/1/3/event", json=EVENT).status_code == 404
    replace_file(registry_file, '[accounts.1]\ntrackers = ["1", "2", "3"]\n')
    wait_until(lambda: client.post("/collect/1/3/event", json=EVENT).status_code == 204, what="the reload")
    assert client.post(f"/collect/{UUID}/7/event", json=EVENT).status_code == 404  # gone from the file
    assert "registry reloaded" in caplog.text

    caplog.clear()
    replace_file(registry_file, '[accounts.1]\ntrackers = ["1", "2", "3", "4"\n')  # broken
    wait_until(lambda: client.post("/collect/1/1/event", json=EVENT) and "registry refused" in caplog.text,
               what="the broken file noticed")
    assert "not valid TOML" in caplog.text
    assert client.post("/collect/1/3/event", json=EVENT).status_code == 204  # the last good one
    assert client.post("/collect/1/4/event", json=EVENT).status_code == 404


@pytest.mark.parametrize(("text", "problem"), [
    (None, "No such file or directory"),
    ("[accounts.1\n", "not valid TOML"),
    ("[accounts.1]\n", "account 1 needs trackers"),
    ("[accounts.x]\ntrackers = [\"1\"]\n", "account 'x' must be a positive decimal number or a UUID"),
    ("[accounts.1]\ntrackers = [1]\n", "account 1: tracker 1 must be a string"),
    ("accounts = 3\n", "needs an [accounts.<id>] table per account"),
    ("vendors = 3\n" + ONE_ACCOUNT, 'needs a [vendors."<name>"] table per vendor'),
    (ONE_ACCOUNT + '[vendors."Vendor A"]\n',
     """vendor 'Vendor A' needs products = ["<name>", ...] (or [] for any product)"""),
    (ONE_ACCOUNT + '[vendors."Vendor A"]\nproducts = "Chat"\n', "vendor 'Vendor A' needs products = "),
    (ONE_ACCOUNT + "[vendors]\nAcme = 3\n", "vendor 'Acme' needs products = "),
    (ONE_ACCOUNT + '[vendors." "]\nproducts = []\n', "vendor ' ' must not be blank"),
    (ONE_ACCOUNT + '[vendors."Vendor A"]\nproducts = ["Chat", 1]\n', "vendor 'Vendor A': product 1 must be a string"),
    (ONE_ACCOUNT + '[vendors."Vendor A"]\nproducts = ["Chat", ""]\n',
     "vendor 'Vendor A': product '' must not be blank"),
])
def test_a_broken_file_at_start_up_stops_the_service(make_app, tmp_path, text, problem):
    path = tmp_path / "registry.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(RegistryError) as info:
        make_app(COLLECTOR_REGISTRY=str(path))
    assert str(info.value).startswith(f"{path} (COLLECTOR_REGISTRY): ")
    assert problem in str(info.value)


# -- every worker on one registry ------------------------------------------------------------

class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ACCOUNT_5 = ONE_ACCOUNT + '[accounts.5]\ntrackers = ["1"]\n'
BROKEN = ONE_ACCOUNT + "[accounts.6\n"


def test_a_change_is_answered_from_the_first_request_a_second_after_it(tmp_path):
    """Each worker looks at the file at most once a second, on a request: every request a second
    after a change (two at the most, with the request's own time) answers from the new file."""
    clock, path = Clock(), tmp_path / "registry.toml"
    replace_file(path, ONE_ACCOUNT)
    registry = Registry(str(path), str(tmp_path / "spool"), check_interval=1.0, clock=clock)
    replace_file(path, ACCOUNT_5)
    clock.now += 0.5
    assert registry.unknown("5", "1") == {"aid": ["account 5 is not registered"]}  # not looked at yet
    clock.now += 0.5
    assert registry.unknown("5", "1") is None


def test_a_broken_file_is_refused_the_same_way_on_every_worker(tmp_path, caplog):
    """The issue's case: a worker that had no request between a good edit and a broken one answers
    from the good one, as the worker that read it does."""
    clock, path, spool = Clock(), tmp_path / "registry.toml", str(tmp_path / "spool")
    replace_file(path, ONE_ACCOUNT)
    busy, idle = Registry(str(path), spool, clock=clock), Registry(str(path), spool, clock=clock)
    replace_file(path, ACCOUNT_5)
    clock.now += 1
    assert busy.unknown("5", "1") is None
    replace_file(path, BROKEN)
    clock.now += 1
    assert (idle.unknown("5", "1"), busy.unknown("5", "1")) == (None, None)
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refused) == 2 and refused[0] == refused[1], "the same message from each"
    assert refused[0].startswith("registry refused, answering from the last good one: ")
    assert "(COLLECTOR_REGISTRY): not valid TOML" in refused[0]
    clock.now += 1
    caplog.clear()
    assert idle.unknown("5", "1") is None and not caplog.records, "logged once, not every second"


def test_a_worker_started_while_the_file_is_broken_answers_from_the_last_good_one(tmp_path):
    """gunicorn starts a worker again after one dies: it must not stop the service, nor differ."""
    path, spool = tmp_path / "registry.toml", str(tmp_path / "spool")
    replace_file(path, ACCOUNT_5)
    first = Registry(str(path), spool)
    replace_file(path, BROKEN)
    later = Registry(str(path), spool)
    assert later.known == first.known and later.unknown("5", "1") is None
    with pytest.raises(RegistryError, match="not valid TOML"):
        Registry(str(path))  # gunicorn's own check at start-up keeps nothing: a broken file stops it


# -- vendors and products (what an event meets: test_vendors.py) --------------------------------

def test_vendors_reload_and_a_broken_vendors_table_keeps_the_last_good_ones(with_vendors, vendors_file, caplog):
    caplog.set_level(logging.INFO, logger="app.registry")
    client = with_vendors.test_client()
    assert client.post("/collect/1/1/event", json=vendor_event("Acme", "Rockets")).status_code == 400
    replace_file(vendors_file, VENDORS + '\n[vendors.Acme]\nproducts = ["Rockets"]\n')
    wait_until(lambda: client.post("/collect/1/1/event", json=vendor_event("Acme", "Rockets")).status_code == 204,
               what="the reload")
    assert "registry reloaded" in caplog.text

    caplog.clear()
    replace_file(vendors_file, VENDORS + '\n[vendors.Globex]\nproducts = ["Lamps", " "]\n')  # broken
    wait_until(lambda: client.post("/collect/1/1/event", json=vendor_event("Acme", "Rockets"))
               and "registry refused, answering from the last good one" in caplog.text,
               what="the broken file noticed")
    assert "vendor 'Globex': product ' ' must not be blank" in caplog.text
    # the last good one:
    assert client.post("/collect/1/1/event", json=vendor_event("Acme", "Rockets")).status_code == 204
    assert client.post("/collect/1/1/event", json=vendor_event("Globex", "Lamps")).status_code == 400
