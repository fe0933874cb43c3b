"""/docs: Swagger UI over /openapi.json, every asset served by the collector; Try it out sends a real event."""
from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from app.config import ConfigError, Settings
from dev.events import read_records

from .conftest import ROOT
from .test_clients import chromium  # noqa: F401  (the headless Chromium fixture)
from .test_integration import new_account

ASSETS = {"/docs/swagger-ui.css": "text/css", "/docs/swagger-ui-bundle.js": "text/javascript",
          "/docs/favicon-32x32.png": "image/png"}
SCREENSHOT = ROOT / "docs" / "docs-page.png"  # the README's; remade with SCREENSHOTS=1


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
    assert {k: record["value"][k] for k in example} == example


# -- in headless Chromium, against gunicorn and the real broker -----------------------------

OPERATION = '//*[contains(@class, "opblock-summary-path") and @data-path="/collect/{aid}/{tid}/event"]'


def operation(driver: Any) -> Any:
    """The expanded block of POST /collect/{aid}/{tid}/event."""
    return driver.find_element(By.XPATH, OPERATION + '/ancestor::div[contains(@class, "opblock ")]')


def replace_text(field: Any, text: str) -> None:
    """Type ``text`` over what a field holds (Swagger UI's fields are React's: typing, not setting)."""
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text)


@pytest.mark.integration
def test_try_it_out_sends_a_real_event(chromium, collector, broker, tmp_path):  # noqa: F811
    aid = new_account(broker)
    instance_id = f"docs-{uuid.uuid4()}"
    base = f"http://127.0.0.1:{collector.port}"
    wait = WebDriverWait(chromium, 30)
    chromium.set_window_size(1280, 1850)  # the screenshot: the page's head down to the answer
    chromium.get(f"{base}/docs")
    wait.until(lambda d: d.find_elements(By.XPATH, OPERATION)).pop().click()
    block = wait.until(lambda d: operation(d) if "is-open" in operation(d).get_attribute("class") else None)
    block.find_element(By.CSS_SELECTOR, "button.try-out__btn").click()
    field = wait.until(lambda d: block.find_element(By.CSS_SELECTOR, 'tr[data-param-name="aid"] input'))
    assert field.get_attribute("value") == "1", "the example account"
    replace_text(field, aid)
    body = block.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
    example = json.loads(body.get_attribute("value"))
    assert example["action"] == "View" and example["instance_id"] == "docs-example-1"
    replace_text(body, json.dumps({**example, "instance_id": instance_id}, indent=2))
    block.find_element(By.CSS_SELECTOR, "button.execute").click()
    answer = ".live-responses-table tr.response .response-col_status"
    status = wait.until(lambda d: block.find_elements(By.CSS_SELECTOR, answer))  # polls until the answer shows
    assert status[0].text.split()[0] == "204", block.find_element(By.CSS_SELECTOR, ".live-responses-table").text
    loaded = chromium.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert {f"{base}/openapi.json", *(base + path for path in ASSETS)} <= set(loaded)
    assert all(url.startswith(base + "/") for url in loaded), loaded
    chromium.execute_script("window.scrollTo(0, 0)")
    shot = SCREENSHOT if os.environ.get("SCREENSHOTS") == "1" else tmp_path / SCREENSHOT.name
    assert chromium.save_screenshot(str(shot)) and shot.read_bytes().startswith(b"\x89PNG")

    [record] = read_records(broker.servers, f"events.{aid}", count=1, timeout=10)
    event = json.loads(record.value)
    assert record.key.decode() == instance_id
    assert (event["instance_id"], event["action"], event["account_id"]) == (instance_id, "View", aid)
    assert "HeadlessChrome" in event["context"]["user_agent"]
