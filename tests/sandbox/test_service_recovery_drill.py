"""`codeblue drill failed-redeploy --json`: the hotfix fails verification, CodeBlue rolls back."""

from __future__ import annotations

import json

from tests.support.cli import codeblue


def test_failed_redeploy_drill_rolls_back_and_verifies():
    r = codeblue("drill", "failed-redeploy", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["status"] == "rolled_back" and rep["verified"] is True
    (act,) = rep["actions"]
    assert (act["id"], act["kind"], act["state"], act["approved_by"]) == ("redeploy", "helm_upgrade", "compensated", "drill-ic")
    assert act["compensation"].startswith("helm rollback healthcare-platform 12")
    events = [e["event"] for e in rep["timeline"]]
    for step in ("Preflight passed", "Executed redeploy", "Verification failed", "Compensated redeploy",
                 "Re-verification after rollback passed", "Page engineering manager"):
        assert step in events, step
    said = " ".join(r.stderr.split())  # rich wraps lines
    assert "DRILL PASSED" in said and "gateway on v1.4.1 (healthy)" in said
