"""The OpenAPI document (app/openapi.py): what it describes is what the app serves."""
from __future__ import annotations

import re


def test_the_document_and_the_routes_agree(app):
    document = app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {(re.sub(r"\{(\w+)\}", r"<\1>", path), method.upper())
                  for path, item in document["paths"].items() for method in item if method != "parameters"}
    registered = {(rule.rule, method) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == registered
