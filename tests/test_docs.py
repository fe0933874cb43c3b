"""/docs (app/docs.py): Swagger UI over /openapi.json, every file served by the collector, off with COLLECTOR_DOCS=false
(Try it out in Chromium: integration/test_docs.py)."""
from __future__ import annotations

import re

import pytest

from app.config import ConfigError, Settings

ASSETS = {"/docs/swagger-ui.css": "text/css", "/docs/swagger-ui-bundle.js": "text/javascript",
          "/docs/favicon-32x32.png": "image/png"}


def links(html: str) -> list[str]:
    """Every src and href of a page."""
    return re.findall(r'(?:src|href)="([^"]*)"', html)


def test_the_page_loads_only_the_collectors_own_files(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.text
    assert "SwaggerUIBundle(" in html and '"/openapi.json"' in html
    assert "http:" not in html and "https:" not in html
    assert sorted(links(html)) == sorted(ASSETS)  # paths on this host, none scheme-relative ("//host/...")


@pytest.mark.parametrize(("path", "mimetype"), ASSETS.items())
def test_the_assets_are_served(client, path, mimetype):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert len(response.data) > 500


def test_the_script_is_swagger_ui_5(client):
    script = client.get("/docs/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in script
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', script), "Swagger UI 5: the first to show OpenAPI 3.1"


@pytest.mark.parametrize("name", ["oauth2-redirect.html", "swagger-ui.js", "VERSION", "..", "index.css"])
def test_no_other_file_of_the_package_is_served(client, name):
    response = client.get(f"/docs/{name}")
    assert response.status_code == 404
    assert response.get_json() == {"code": 404, "message": f"no such file of the API reference: {name}"}


def test_collector_docs_false_turns_the_page_off(make_app):
    client = make_app(COLLECTOR_DOCS=False).test_client()
    for path in ["/docs", *ASSETS]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["code"] == 404
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p.startswith("/docs")]


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), (" FALSE ", False), ("True", True)])
def test_collector_docs_values(value, expected):
    assert Settings.from_env({"COLLECTOR_DOCS": value}).docs is expected
    assert Settings.from_env({}).docs is True


@pytest.mark.parametrize("value", ["yes", "0", "", "off", "flase"])
def test_a_bad_collector_docs_is_refused_by_name(value):
    with pytest.raises(ConfigError, match=f"COLLECTOR_DOCS must be true or false, got {value.lower()!r}"):
        Settings.from_env({"COLLECTOR_DOCS": value})


def test_the_documents_example_is_tracked_as_it_stands(client, sent):
    """What Try it out sends untouched: the path parameters' and the body's examples."""
    document = client.get("/openapi.json").get_json()
    item = document["paths"]["/collect/{aid}/{tid}/event"]
    ids = {p["name"]: p["example"] for p in item["parameters"]}
    example = item["post"]["requestBody"]["content"]["application/json"]["example"]
    response = client.post(f"/collect/{ids['aid']}/{ids['tid']}/event", json=example)
    assert response.status_code == 204
    [record] = sent()
    assert record["topic"] == "events.1"
    assert {k: record["value"].get(k, record["value"]["properties"].get(k)) for k in example} == example


# -- in headless Chromium, against gunicorn and the real broker -----------------------------
