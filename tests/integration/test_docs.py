"""/docs in headless Chromium against gunicorn and the broker: Try it out sends a real event."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from app.docs import ASSETS
from dev.events import read_records
from tests.helpers import ROOT, new_account

pytestmark = pytest.mark.integration
SCREENSHOT = ROOT / "docs" / "docs-page.png"  # the README's; remade with SCREENSHOTS=1

OPERATION = '//*[contains(@class, "opblock-summary-path") and @data-path="/collect/{aid}/{tid}/event"]'


def operation(driver: Any) -> Any:
    """The expanded block of POST /collect/{aid}/{tid}/event."""
    return driver.find_element(By.XPATH, OPERATION + '/ancestor::div[contains(@class, "opblock ")]')


def replace_text(field: Any, text: str) -> None:
    """Type ``text`` over what a field holds (Swagger UI's fields are React's: typing, not setting)."""
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text)


def test_try_it_out_sends_a_real_event(chromium, collector, broker, tmp_path):
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
    assert {f"{base}/openapi.json", *(f"{base}/docs/{name}" for name in ASSETS)} <= set(loaded)
    assert all(url.startswith(base + "/") for url in loaded), loaded
    chromium.execute_script("window.scrollTo(0, 0)")
    shot = SCREENSHOT if os.environ.get("SCREENSHOTS") == "1" else tmp_path / SCREENSHOT.name
    assert chromium.save_screenshot(str(shot)) and shot.read_bytes().startswith(b"\x89PNG")

    [record] = read_records(broker.servers, f"events.{aid}", count=1, timeout=10)
    event = json.loads(record.value)
    assert record.key.decode() == instance_id
    assert (event["instance_id"], event["action"], event["account_id"]) == (instance_id, "View", aid)
    assert "HeadlessChrome" in event["context"]["user_agent"]
