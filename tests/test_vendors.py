"""An event's vendor and product against the registry's vendors (app/vendors.py): a vendor or
product it does not list is a 400 that says what is registered, and nothing is queued."""
from __future__ import annotations

import pytest

from app.vendors import unregistered
from tests.helpers import ONE_ACCOUNT, VENDORS, replace_file, sent_by, vendor_event

PRODUCTS = 'its products are "Chat" and "Product 1"'


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
    ("Vendor A", "Mail", "product", 'is not registered for vendor "Vendor A": ' + PRODUCTS),
    ("Vendor A", "chat", "product", 'is not registered for vendor "Vendor A" (did you mean "Chat"?): ' + PRODUCTS),
    ("Vendor A", "Product1", "product",
     'is not registered for vendor "Vendor A" (did you mean "Product 1"?): ' + PRODUCTS),
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


@pytest.mark.parametrize(("products", "shown"), [
    (["One"], 'its products are "One"'),
    ([f"P{n:02}" for n in range(12)],
     'its products are "P00", "P01", "P02", "P03", "P04", "P05", "P06", "P07", "P08", "P09" and 2 more'),
])
def test_a_product_error_names_its_vendor_and_its_products(products, shown):
    [why] = unregistered({"Acme": frozenset(products)}, "Acme", "Rockets")["product"]
    assert why == 'is not registered for vendor "Acme": ' + shown
