"""The operators' kit in deploy/: the alert rules, their promtool tests and the Grafana dashboard,
checked against each other, by promtool, and against a running collector's /metrics."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from .conftest import ROOT, wait_until
from .test_integration import new_account

RULES = ROOT / "deploy" / "prometheus" / "collector.rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "collector.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "collector.json"

EVENT = {"action": "view", "object": "form", "vendor": "V", "product": "P", "instance_id": "i1"}

#: What the rules may read besides the collector's own metrics: the scrape's `up`, and the
#: blackbox exporter's probe of /readyz (the collector has no readiness metric).
NOT_THE_COLLECTORS = {"up", "probe_success"}

#: Grafana's variables, replaced by what makes the queries plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".*", "$instance": ".*"}

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "offset", "bool", "inf", "nan"}


def alerting_rules() -> dict[str, str]:
    """The alerts of collector.rules.yml: name -> expression."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"] if "alert" in rule}


def dashboard_exprs() -> list[str]:
    """The queries of the dashboard's panels."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values may hold anything
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr)  # not followed by "(": no function
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def selectors(expr: str) -> list[tuple[str, str, str, str]]:
    """The label matchers on the collector's metrics in ``expr``: (metric, label, operator, value)."""
    found = []
    for name, matchers in re.findall(r"\b(collector_[a-z_]+)\{([^}]*)\}", expr):
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', matchers):
            found.append((name, label, op, value))
    return found


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (job, instance) (increase(collector_events_total{outcome="lost"}[15m])) > 0',
     {"collector_events_total"}),
    ('histogram_quantile(0.99, sum by (le) (rate(collector_delivery_seconds_bucket{job=~"$job"}[5m]))) > 5',
     {"collector_delivery_seconds_bucket"}),
    ('(x_total == 0 or (up{job="collector"} unless on (job, instance) y{route=~"/collect/.+"}))'
     ' and on (job, instance) up == 1', {"x_total", "up", "y"}),
    ('collector_spool_backlog_bytes > 64 * 1024 * 1024 and deriv(collector_spool_backlog_bytes[15m]) > 0',
     {"collector_spool_backlog_bytes"}),
    ('probe_success{job="collector-readyz", instance="collector_not_a_name"} == 0', {"probe_success"}),
])
def test_metric_names_finds_what_a_query_reads(expr, names):
    assert metric_names(expr) == names


def test_every_alert_fires_and_stays_silent_in_the_promtool_tests():
    rules = alerting_rules()
    groups = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    silent: set[str] = set()  # silent where the test's input has every metric the alert reads
    named: set[str] = set()
    for group in groups:
        fed = {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s["series"]).group() for s in group["input_series"]}
        for case in group.get("alert_rule_test", []):
            name = case["alertname"]
            named.add(name)
            if case.get("exp_alerts"):
                fires.add(name)
            elif name in rules and metric_names(rules[name]) <= fed:
                silent.add(name)
    # promtool passes a silent case for an alert that does not exist: a misspelt name proves nothing.
    assert named - set(rules) == set(), "test cases for alerts the rules do not have"
    assert {name: ("fires" if name in fires else "never fires", "silent" if name in silent else "never silent")
            for name in rules if name not in fires & silent} == {}


def test_the_rules_read_the_collectors_metrics_up_and_the_readyz_probe_only():
    read = set().union(*map(metric_names, alerting_rules().values()))
    assert {name for name in read if not name.startswith("collector_")} <= NOT_THE_COLLECTORS


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool; without it the test fails, it does not skip (as the suite does for nginx)."""
    if not shutil.which("promtool"):
        pytest.fail("promtool is needed: apt-get install prometheus (make test does)")
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules_and_passes_their_tests():
    checked = promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_dashboards_queries_are_promql_on_the_collectors_metrics(tmp_path):
    """promtool parses each query (its Grafana variables filled in) as a recording rule."""
    exprs = dashboard_exprs()
    assert exprs
    assert {name for expr in exprs for name in metric_names(expr) if not name.startswith("collector_")} == set()
    filled = []
    for expr in exprs:
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        filled.append(expr)
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": expr}
                                                         for i, expr in enumerate(filled)]}]}
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", tmp_path / "dashboard.rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_asks_for_its_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    wanted = {"type": "prometheus", "uid": "${datasource}"}
    sources = [panel["datasource"] for panel in dashboard["panels"]]
    sources += [target["datasource"] for panel in dashboard["panels"] for target in panel["targets"]]
    sources += [v["datasource"] for v in variables.values() if v["type"] == "query"]
    assert all(source == wanted for source in sources)


# -- against a running collector ----------------------------------------------------------

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


@pytest.mark.integration
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
