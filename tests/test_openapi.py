"""The OpenAPI document (app/openapi.py): what it describes is what the app serves."""
from __future__ import annotations

import re
from typing import Any

import pytest

from app.openapi import EXAMPLE
from tests.helpers import EVENT, ONE_ACCOUNT


def test_the_document_and_the_routes_agree(app):
    document = app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {(re.sub(r"\{(\w+)\}", r"<\1>", path), method.upper())
                  for path, item in document["paths"].items() for method in item if method != "parameters"}
    registered = {(rule.rule, method) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"} if not rule.endpoint.startswith(("docs.", "debug."))}
    assert documented == registered, "every API operation; not /docs and its files, nor the live debugger (docs/api.md)"
    assert not [path for path in document["paths"] if path.startswith(("/docs", "/debug"))]


def test_the_document_says_the_limits_the_settings_give(make_app):
    app = make_app(COLLECTOR_MAX_BATCH=7, COLLECTOR_MAX_STRING=100, COLLECTOR_MAX_FIELDS=20, COLLECTOR_MAX_DEPTH=3)
    document = app.test_client().get("/openapi.json").get_json()
    batch = document["paths"]["/collect/{aid}/{tid}/events"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["maxItems"] == 7
    schemas = document["components"]["schemas"]
    assert (schemas["Event"]["maxProperties"], schemas["Event"]["properties"]["action"]["maxLength"]) == (20, 100)
    levels = schemas["Property"]["$defs"]
    assert sorted(levels) == ["level3", "level4"]  # the event is level 1, its fields level 2: Property itself
    assert [len(s["anyOf"]) for s in (schemas["Property"], levels["level3"], levels["level4"])] == [4, 4, 2]


@pytest.mark.parametrize("aid", ["7", "007", "3F2504E0-4F89-11D3-9A0C-0305E82C3301", "0", "-1", "1.5", "x",
                                 "1" + "0" * 20])
def test_the_document_takes_the_ids_the_route_takes(client, aid):
    document = client.get("/openapi.json").get_json()
    [parameter] = [p for p in document["paths"]["/collect/{aid}/{tid}/event"]["parameters"] if p["name"] == "aid"]
    documented = re.search(parameter["schema"]["pattern"], aid) is not None
    taken = client.post(f"/collect/{aid}/1/event", json=EVENT).status_code == 204
    assert documented is taken


def test_the_schemas_are_named_and_the_operations_tagged(client):
    document = client.get("/openapi.json").get_json()
    assert sorted(document["components"]["schemas"]) == [
        "BatchAnswer", "Context", "Error", "Event", "InternalEvent", "Property", "Record", "Reject",
        "Rejected"]
    assert [tag["name"] for tag in document["tags"]] == ["collect", "operations"]
    tags = {path: [op["tags"] for method, op in item.items() if method != "parameters"]
            for path, item in document["paths"].items()}
    assert tags == {"/collect/{aid}/{tid}/event": [["collect"]], "/collect/{aid}/{tid}/events": [["collect"]],
                    **{path: [["operations"]] for path in ("/healthz", "/readyz", "/metrics", "/openapi.json")}}


def examples(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """The example a reader of the document sees for ``schema``: its own, else one built from its fields'."""
    if "$ref" in schema:
        return examples(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    if "example" in schema:
        return schema["example"]
    if schema.get("type") == "array":
        return [examples(schema["items"], schemas)]
    assert schema.get("properties"), f"a schema without an example or fields: {schema}"
    return {name: examples(field, schemas) for name, field in schema["properties"].items()}


def test_every_answer_has_a_realistic_example(client):
    """Nothing for Swagger UI to make up (``"additionalProp1": "string"``): the validate-only record
    is what the document's own example event becomes."""
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    record = examples(schemas["Record"], schemas)
    shown = client.post("/collect/1/1/event?validate=true", json=EXAMPLE).get_json()
    assert [k for k in record["value"] if k != "score"] == list(shown["value"]), "a record's fields, in its order"
    fresh = ("event_id", "received_at", "context", "score")  # made anew for each event, or not in the example
    assert {k: v for k, v in record["value"].items() if k not in fresh} == {
        k: v for k, v in shown["value"].items() if k not in fresh}
    assert (record["topic"], record["key"]) == (shown["topic"], shown["key"])
    batch = document["paths"]["/collect/{aid}/{tid}/events"]["post"]
    answer = client.post("/collect/1/1/events?validate=true",
                         json=batch["requestBody"]["content"]["application/json"]["example"]).get_json()
    assert examples(schemas["BatchAnswer"], schemas) == {**answer, "events": [record]}
    for path, item in document["paths"].items():
        for status, response in item.get("post", item.get("get", {}))["responses"].items():
            for media in response.get("content", {}).values():
                assert "example" in media or "$ref" in media["schema"], (path, status)


@pytest.mark.parametrize(("status", "config", "request_"), [
    (400, {}, {"json": {k: v for k, v in EVENT.items() if k != "action"}}),
    (403, {"COLLECTOR_CORS_ORIGINS": "https://www.example.com"}, {"json": EVENT,
                                                                 "headers": {"Origin": "https://evil.example"}}),
    (404, {"COLLECTOR_REGISTRY": "registry"}, {"json": EVENT, "path": "/collect/5/1/event"}),
    (408, {}, {"data": b"{}", "content_type": "application/json", "environ_overrides": {"CONTENT_LENGTH": "10"}}),
    (413, {}, {"data": b" " * 65537, "content_type": "application/json"}),
    (415, {}, {"data": "a=1", "content_type": "application/x-www-form-urlencoded"}),
])
def test_the_error_examples_are_what_the_collector_answers(make_app, tmp_path, status, config, request_):
    if config.get("COLLECTOR_REGISTRY"):
        (tmp_path / "registry.toml").write_text(ONE_ACCOUNT)
        config = {"COLLECTOR_REGISTRY": str(tmp_path / "registry.toml")}
    client = make_app(**config).test_client()
    response = client.post(request_.pop("path", "/collect/1/1/event"), **request_)
    document = client.get("/openapi.json").get_json()
    example = document["paths"]["/collect/{aid}/{tid}/event"]["post"]["responses"][str(status)]["content"]
    assert (response.status_code, response.get_json()) == (status, example["application/json"]["example"])
