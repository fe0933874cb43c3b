"""The registry (app/registry.py): unknown accounts and trackers are 404s, unregistered vendors and
products 400s; the file is reloaded when it changes, and a broken one stops the start."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.registry import RegistryError
from tests.fakes import FakeKafkaAdmin
from tests.helpers import EVENT, ONE_ACCOUNT, replace_file, sent_by, vendor_event, wait_until

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
    wait_until(lambda: client.post("/collect/1/1/event", json=EVENT) and "registry not reloaded" in caplog.text,
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
    assert str(info.value).startswith(f"{path}: ")
    assert problem in str(info.value)


# -- vendors and products ------------------------------------------------------------------

VENDORS = ONE_ACCOUNT + '''
[vendors."Vendor A"]
products = ["Product 1", "Chat"]

[vendors."Vendor B"]
products = []
'''


@pytest.fixture
def vendors_file(tmp_path: Path) -> Path:
    path = tmp_path / "vendors.toml"
    replace_file(path, VENDORS)
    return path


@pytest.fixture
def with_vendors(make_app, vendors_file):
    return make_app(COLLECTOR_REGISTRY=str(vendors_file))


@pytest.mark.parametrize(("registry", "vendor", "product"), [
    (VENDORS, "Vendor A", "Product 1"),
    (VENDORS, "Vendor A", "Chat"),
    (VENDORS, "Vendor B", "anything at all"),  # an empty list takes any product
    (ONE_ACCOUNT, "vendor  a", "whatever"),  # no [vendors] table: anything goes, as before it existed
    ("vendors = {}\n" + ONE_ACCOUNT, "vendor  a", "whatever"),  # nor does an empty one list any vendor
])
def test_a_registered_vendor_and_product_are_tracked_as_sent(make_app, tmp_path, registry, vendor, product):
    path = tmp_path / "registry.toml"
    replace_file(path, registry)
    app = make_app(COLLECTOR_REGISTRY=str(path))
    assert app.test_client().post("/collect/1/1/event", json=vendor_event(vendor, product)).status_code == 204
    [record] = sent_by(app)
    assert (record["value"]["vendor"], record["value"]["product"]) == (vendor, product)


@pytest.mark.parametrize(("vendor", "product", "field", "why"), [
    ("Acme", "Chat", "vendor", "is not registered"),
    ("vendor a", "Chat", "vendor", 'is not registered (did you mean "Vendor A"?)'),
    ("Vendor  A", "Chat", "vendor", 'is not registered (did you mean "Vendor A"?)'),
    ("Vendor A ", "Chat", "vendor", 'is not registered (did you mean "Vendor A"?)'),
    ("Vendr A", "Chat", "vendor", 'is not registered (did you mean "Vendor A"?)'),
    ("VENDOR B", "Chat", "vendor", 'is not registered (did you mean "Vendor B"?)'),
    ("Vendor A", "Mail", "product", "is not registered"),
    ("Vendor A", "chat", "product", 'is not registered (did you mean "Chat"?)'),
    ("Vendor A", "Product1", "product", 'is not registered (did you mean "Product 1"?)'),
])
def test_an_unregistered_vendor_or_product_is_refused_and_queues_nothing(with_vendors, vendor, product, field, why):
    client = with_vendors.test_client()
    response = client.post("/collect/1/1/event", json=vendor_event(vendor, product))
    assert response.status_code == 400
    assert response.get_json() == {"code": 400, "message": f"the event was not tracked: {field} {why}",
                                   "errors": {field: [why]}}
    checked = client.post("/collect/1/1/event?validate=true", json=vendor_event(vendor, product))
    assert (checked.status_code, checked.get_json()) == (400, response.get_json())
    assert sent_by(with_vendors) == []


def test_in_a_batch_an_unregistered_vendor_is_rejected_alone_with_its_index(with_vendors):
    client = with_vendors.test_client()
    batch = [vendor_event("Vendor A", "Chat", n=0), vendor_event("Vendor  A", "Chat", n=1),
             vendor_event("Vendor B", "Mail", n=2)]
    rejected = [{"index": 1, "errors": {"vendor": ['is not registered (did you mean "Vendor A"?)']}}]
    checked = client.post("/collect/1/1/events?validate=true", json=batch).get_json()
    assert (checked["accepted"], checked["rejected"]) == (2, rejected)
    response = client.post("/collect/1/1/events", json=batch)
    assert response.status_code == 200
    assert response.get_json() == {"accepted": 2, "rejected": rejected}
    assert [r["value"]["properties"]["n"] for r in sent_by(with_vendors)] == [0, 2]


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
               and "registry not reloaded" in caplog.text, what="the broken file noticed")
    assert "vendor 'Globex': product ' ' must not be blank" in caplog.text
    # the last good one:
    assert client.post("/collect/1/1/event", json=vendor_event("Acme", "Rockets")).status_code == 204
    assert client.post("/collect/1/1/event", json=vendor_event("Globex", "Lamps")).status_code == 400
