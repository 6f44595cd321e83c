"""CodeBlue's own monitoring: deploy/prometheus/codeblue-rules.yaml and the Grafana dashboard
name only metrics CodeBlue exports, promtool accepts the rules, and their unit tests
(deploy/prometheus/codeblue-rules.test.yaml) prove the alerts fire."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import shutil
import subprocess
import urllib.request
from typing import cast

import pytest
import yaml

from starters.api.alert_spool import AlertSpool, SpooledAlert
from starters.api.metrics import SpoolMetrics
from starters.ports import free_port
from tests.support.paths import ROOT
from tests.support.polling import until
from worker.connection import APPROVAL_WAIT_BUCKETS

RULES = ROOT / "deploy" / "prometheus" / "codeblue-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "codeblue-rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "codeblue-dashboard.json"
PROMTOOL = shutil.which("promtool")
# Series Prometheus itself writes for every scrape target (not exported by anyone).
PROMETHEUS_OWN = {"up"}

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (scripts/ensure-services.sh installs Debian's prometheus)")

_METER_CALLS = {
    "create_counter": "counter", "create_gauge": "gauge", "create_gauge_float": "gauge",
    "create_histogram": "histogram", "create_histogram_float": "histogram", "create_histogram_timedelta": "histogram",
}


def exported_metrics() -> set[str]:
    """Every series name CodeBlue's code records through a metric meter, as Prometheus sees it
    (the SDK runtime adds no _total or unit suffix; a histogram is _bucket, _sum, _count)."""
    names: set[str] = set()
    for package in ("domain", "activities", "workflows", "worker", "starters"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            constants = {
                t.id: node.value.value
                for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value.value, str)
            }
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in _METER_CALLS and node.args):
                    continue
                arg = node.args[0]
                name = arg.value if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""))
                assert isinstance(name, str), f"{path}:{node.lineno}: a metric name that is not a constant"
                if _METER_CALLS[node.func.attr] == "histogram":
                    names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                else:
                    names.add(name)
    return names


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
             "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels, keywords or numbers)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r.get("alert") or r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_the_exported_set_is_derived_from_the_code():
    names = exported_metrics()
    # the workflow meter's four (workflows/metrics.py) and the API's spool gauges (starters/api/metrics.py)
    assert {"codeblue_incidents_opened", "codeblue_sla", "codeblue_mitigations",
            "codeblue_approval_wait_seconds_bucket", "codeblue_approval_wait_seconds_count",
            "codeblue_alert_spool_waiting", "codeblue_alert_spool_capacity", "codeblue_alert_dead_letters"} <= names
    assert metric_names('sum by (le) (rate(a_bucket{le="600",x=~"y|z"}[5m] offset 1h)) / ignoring(le) b_count > 1e3') \
        == {"a_bucket", "b_count"}


def test_rules_and_dashboard_name_only_metrics_codeblue_exports():
    exported = exported_metrics() | PROMETHEUS_OWN
    for alert, expr in rule_exprs().items():
        unknown = metric_names(expr) - exported
        assert not unknown, f"rule {alert} names {unknown}, which CodeBlue does not export"
    used = set()
    for expr in dashboard_exprs():
        unknown = metric_names(expr) - exported
        assert not unknown, f"dashboard query {expr!r} names {unknown}"
        used |= metric_names(expr)
    # and the dashboard shows every metric CodeBlue has
    bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported_metrics()}
    assert bases <= {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}, bases - used


def test_the_rules_cover_the_runbooks_failure_modes():
    alerts = rule_exprs()
    wanted = {
        "CodeBlueSLAMissed": "codeblue_sla",
        "CodeBlueApprovalDecidedAfterEscalation": "codeblue_approval_wait_seconds_bucket",
        "CodeBlueWorkerDown": "up",
        "CodeBlueAlertSpoolBacklog": "codeblue_alert_spool_waiting",
        "CodeBlueAlertDeadLetters": "codeblue_alert_dead_letters",
    }
    for alert, metric in wanted.items():
        assert metric in metric_names(alerts[alert]), alert
    # the bucket edges the rules compare with are the ones the worker's runtime exports
    edges = {float(v) for expr in alerts.values() for v in re.findall(r'le="([0-9.]+)"', expr)}
    assert edges and edges <= set(APPROVAL_WAIT_BUCKETS)


@needs_promtool
def test_promtool_accepts_the_rules():
    proc = subprocess.run([cast(str, PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in proc.stdout + proc.stderr


@needs_promtool
def test_promtool_unit_tests_fire_the_alerts():
    proc = subprocess.run([cast(str, PROMTOOL), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60,
                          check=False, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert {"CodeBlueSLAMissed", "CodeBlueApprovalDecidedAfterEscalation", "CodeBlueWorkerDown",
            "CodeBlueAlertSpoolBacklog", "CodeBlueAlertDeadLetters"} <= fired


@needs_promtool
def test_the_dashboards_queries_are_valid_promql(tmp_path):
    """promtool parses each panel query as a recording rule's expression."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"codeblue:dashboard_query_{i}", "expr": expr} for i, expr in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([cast(str, PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_dashboard_is_a_grafana_dashboard():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "codeblue" and doc["schemaVersion"] >= 36
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert panels and all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in panels)
    assert [v["name"] for v in doc["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))


async def test_the_api_serves_the_spool_gauges_the_rules_name(tmp_path):
    """The spool's gauges on a Temporal SDK runtime's Prometheus endpoint, as `codeblue api`
    with CODEBLUE_METRICS_BIND serves them: names unchanged, values following the spool."""
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    bind = f"127.0.0.1:{free_port()}"
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))
    spool = AlertSpool(tmp_path / "alerts.sqlite3", max_alerts=50, metrics=SpoolMetrics(runtime.metric_meter))

    def exported() -> str:
        return urllib.request.urlopen(f"http://{bind}/metrics", timeout=5).read().decode()

    def shows(want: dict[str, int], text: str) -> bool:
        values = {ln.split("{")[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                  if ln.startswith("codeblue_alert")}
        return all(values.get(k) == v for k, v in want.items())

    async def scrape(want: dict[str, int]) -> None:
        await until(lambda: asyncio.to_thread(exported), lambda text: shows(want, text), f"the metrics {want}", timeout=15)

    try:
        await spool.append([("ALERT-a", b"one"), ("ALERT-a", b"two"), ("ALERT-b", b"three")])
        await scrape({"codeblue_alert_spool_waiting": 3, "codeblue_alert_spool_capacity": 50,
                      "codeblue_alert_dead_letters": 0})
        rows = await spool.peek(10)
        await spool.delivered([rows[0].row])
        await spool.dead_letter([SpooledAlert(rows[2].row, rows[2].incident_id, rows[2].payload)], "refused")
        await scrape({"codeblue_alert_spool_waiting": 1, "codeblue_alert_dead_letters": 1})
        assert await spool.requeue_dead_letters() == 1
        await scrape({"codeblue_alert_spool_waiting": 2, "codeblue_alert_dead_letters": 0})
    finally:
        await spool.close()
