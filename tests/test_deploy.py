"""The operators' kit in deploy/: the alert rules, their promtool tests and the Grafana dashboard,
checked against each other and by promtool (against a running collector's /metrics:
integration/test_deploy.py)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import DASHBOARD, RULE_TESTS, RULES, alerting_rules, dashboard_exprs, metric_names

#: What the rules may read besides the collector's own metrics: the scrape's `up`, and the
#: blackbox exporter's probe of /readyz (the collector has no readiness metric).
NOT_THE_COLLECTORS = {"up", "probe_success"}

#: Grafana's variables, replaced by what makes the queries plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".*", "$instance": ".*"}


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
