"""The OpenAPI document (app/openapi.py): what it describes is what the app serves."""
from __future__ import annotations

import re

import pytest

from tests.helpers import EVENT


def test_the_document_and_the_routes_agree(app):
    document = app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {(re.sub(r"\{(\w+)\}", r"<\1>", path), method.upper())
                  for path, item in document["paths"].items() for method in item if method != "parameters"}
    registered = {(rule.rule, method) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == registered


def test_the_document_says_the_limits_the_settings_give(make_app):
    app = make_app(COLLECTOR_MAX_BATCH=7, COLLECTOR_MAX_STRING=100, COLLECTOR_MAX_FIELDS=20, COLLECTOR_MAX_DEPTH=3)
    document = app.test_client().get("/openapi.json").get_json()
    batch = document["paths"]["/collect/{aid}/{tid}/events"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["maxItems"] == 7
    schemas = document["components"]["schemas"]
    assert (schemas["Event"]["maxProperties"], schemas["Event"]["properties"]["action"]["maxLength"]) == (20, 100)
    assert sorted(name for name in schemas if name.startswith("Value")) == ["Value2", "Value3", "Value4"]
    assert [len(schemas[f"Value{level}"]["anyOf"]) for level in (2, 3, 4)] == [4, 4, 2]  # no containers past 3


@pytest.mark.parametrize("aid", ["7", "007", "3F2504E0-4F89-11D3-9A0C-0305E82C3301", "0", "-1", "1.5", "x",
                                 "1" + "0" * 20])
def test_the_document_takes_the_ids_the_route_takes(client, aid):
    document = client.get("/openapi.json").get_json()
    [parameter] = [p for p in document["paths"]["/collect/{aid}/{tid}/event"]["parameters"] if p["name"] == "aid"]
    documented = re.search(parameter["schema"]["pattern"], aid) is not None
    taken = client.post(f"/collect/{aid}/1/event", json=EVENT).status_code == 204
    assert documented is taken
