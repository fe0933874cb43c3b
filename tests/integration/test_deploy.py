"""The operators' kit against a running collector: every metric and label value the dashboard
and the alert rules read is on its /metrics."""
from __future__ import annotations

import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.helpers import EVENT, alerting_rules, dashboard_exprs, metric_names, new_account, selectors, wait_until

pytestmark = pytest.mark.integration


def exposed(text: str) -> list[Sample]:
    """The samples of a /metrics answer."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def unselected(exprs: list[str], samples: list[Sample]) -> list[str]:
    """The matchers in ``exprs`` that select none of ``samples``, each said in a line."""
    problems = []
    for name, label, op, value in {s for expr in exprs for s in selectors(expr)}:
        if label in ("job", "instance"):  # Prometheus adds them at the scrape
            continue
        values = {s.labels[label] for s in samples if s.name == name and label in s.labels}
        if not values:
            problems.append(f"{name} has no label {label}")
        elif label == "status":  # a healthy collector answers no 5xx: the codes are what 5.. is written for
            problems += [f"{name} has status {v}" for v in values if not re.fullmatch(r"[1-5]\d\d", v)]
        elif op == "=" and value not in values:
            problems.append(f"{name}{{{label}={value!r}}} is not exposed; {label} is one of {sorted(values)}")
        elif op == "=~" and not any(re.fullmatch(value, v) for v in values):
            problems.append(f"{name}{{{label}=~{value!r}}} matches none of {sorted(values)}")
    return problems


def test_every_metric_the_dashboard_and_alerts_read_is_exposed(collector, broker):
    aid = new_account(broker)
    for i in range(3):
        assert collector.post_event({**EVENT, "instance_id": f"kit-{i}"}, aid=aid)[0] == 204
    assert collector.post_event({"action": "view"}, aid=aid)[0] == 400
    status, _, _ = collector.request("POST", f"/collect/{aid}/1/event?validate=true", json.dumps(EVENT).encode(),
                                     {"Content-Type": "application/json"})
    assert status == 200

    def counted() -> list[Sample] | None:  # each worker adds its counts every send interval
        samples = exposed(collector.request("GET", "/metrics")[2].decode())
        collected = sum(s.value for s in samples if s.name == "collector_http_requests_total"
                        and s.labels["route"] == "/collect/<aid>/<tid>/event")
        delivered = [s.value for s in samples if s.name == "collector_events_total"
                     and s.labels["outcome"] == "delivered"]
        return samples if (collected, delivered) == (5, [3]) else None

    samples = wait_until(counted, timeout=20, what="5 requests counted and 3 events delivered")
    names = {s.name for s in samples}
    for what, exprs in (("dashboard", dashboard_exprs()), ("alert rules", list(alerting_rules().values()))):
        read = {name for expr in exprs for name in metric_names(expr) if name.startswith("collector_")}
        assert read, what
        assert read - names == set(), f"the {what} read metrics /metrics does not have"
        assert unselected(exprs, samples) == [], f"the {what} select series /metrics does not have"
