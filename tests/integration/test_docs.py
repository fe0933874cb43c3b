"""/docs in headless Chromium against gunicorn and the broker: Try it out sends a real event."""
from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from app.docs import ASSETS
from app.openapi import EXAMPLE
from dev.events import read_records
from tests.helpers import ROOT, wait_until

pytestmark = pytest.mark.integration
SCREENSHOT = ROOT / "docs" / "docs-page.png"  # the README's; remade with SCREENSHOTS=1

OPERATION = '//*[contains(@class, "opblock-summary-path") and @data-path="/collect/{aid}/{tid}/event"]'


def operation(driver: Any) -> Any:
    """The expanded block of POST /collect/{aid}/{tid}/event."""
    return driver.find_element(By.XPATH, OPERATION + '/ancestor::div[contains(@class, "opblock ")]')


def test_try_it_out_sends_the_documents_example_as_it_stands(chromium, collector, broker, tmp_path):
    """As the README says: to account 1, tracker 1, the example event, answered 204; the screenshot
    the README shows is of this run."""
    base = f"http://127.0.0.1:{collector.port}"
    began = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    wait = WebDriverWait(chromium, 30)
    chromium.set_window_size(1280, 1850)  # the screenshot: the page's head down to the answer
    chromium.get(f"{base}/docs")
    wait.until(lambda d: d.find_elements(By.XPATH, OPERATION)).pop().click()
    block = wait.until(lambda d: operation(d) if "is-open" in operation(d).get_attribute("class") else None)
    assert "additionalProp" not in chromium.page_source, "every example is the document's own"
    block.find_element(By.CSS_SELECTOR, "button.try-out__btn").click()
    field = wait.until(lambda d: block.find_element(By.CSS_SELECTOR, 'tr[data-param-name="aid"] input'))
    assert field.get_attribute("value") == "1", "the example account"
    body = block.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
    assert json.loads(body.get_attribute("value")) == EXAMPLE
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

    def this_run() -> list[dict[str, Any]]:  # account 1's topic is every test's: this test's event is the browser's
        events = [json.loads(r.value) for r in read_records(broker.servers, "events.1", timeout=5)]
        return [e for e in events if "HeadlessChrome" in e["context"]["user_agent"] and e["received_at"] >= began]

    [event] = wait_until(this_run, timeout=30, what="the event in Kafka")
    assert (event["account_id"], event["tracker_id"], event["instance_id"]) == ("1", "1", EXAMPLE["instance_id"])
    assert {k: event.get(k, event["properties"].get(k)) for k in EXAMPLE} == EXAMPLE
