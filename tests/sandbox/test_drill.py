"""The README's main command: `codeblue drill` mitigates, verifies and reports."""

from __future__ import annotations

import json

from tests.support.cli import codeblue


def test_drill_mitigates_by_rollback_and_reports_json():
    r = codeblue("drill", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)  # stdout is the report alone
    assert rep["status"] == "resolved" and rep["verified"] is True
    assert rep["severity"] == "P0"
    actions = {a["id"]: a for a in rep["actions"]}
    assert actions["rollback"]["state"] == "executed"
    assert actions["rollback"]["approved_by"] == "drill-ic"
    assert all(a["state"] == "rejected" for k, a in actions.items() if k != "rollback")
    assert {s["name"]: s["met"] for s in rep["sla"]} == {"diagnostics": True, "assessment": True, "communication": True}
    events = [e["event"] for e in rep["timeline"]]
    for step in ("Page on call", "Immediate actions complete", "Assessment complete", "Update status page",
                 "Notify stakeholders", "Create incident channel", "Executed rollback",
                 "Health verification passed", "Close incident channel", "Incident resolved"):
        assert step in events, step
    assert "DRILL PASSED" in r.stderr
    assert "/namespaces/default/workflows/DRILL-" in r.stderr  # the UI link


def test_unknown_scenario_is_one_clear_line():
    r = codeblue("drill", "no-such-scenario", timeout=60)
    assert r.returncode == 1
    assert "unknown scenario 'no-such-scenario'" in r.stderr
    assert "bad-deploy" in r.stderr
    assert "Traceback" not in r.stderr
