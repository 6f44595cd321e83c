"""The multi-service world's drills (issue #26; sandbox/scenario_platform.py): a bad deploy of
patient-portal touches patient-portal only, two incidents approving one release's rollback at
once give one rollback, and a shared database down gives one database proposal with the
affected services listed. The drills run at once, each on its own sandbox and dev server."""

from __future__ import annotations

import asyncio
import json

import pytest_asyncio

from tests.support.cli import cb


@pytest_asyncio.fixture(scope="module")
async def drills():
    names = ("portal-bad-deploy", "two-incidents", "shared-db-outage")
    # no sandbox Prometheus: SLIs are not what these drills are about, and three at once cost a core
    runs = await asyncio.gather(*(cb("drill", name, "--json", env={"CODEBLUE_SANDBOX_PROMETHEUS": "0"}, timeout=240)
                                  for name in names))
    return dict(zip(names, runs, strict=True))


def test_a_bad_deploy_of_patient_portal_rolls_back_patient_portal_only(drills):
    code, out, err = drills["portal-bad-deploy"]
    assert code == 0, err[-3000:]
    rep = json.loads(out)
    assert rep["service"] == "patient-portal" and rep["status"] == "resolved" and rep["verified"] is True
    acts = {a["id"]: a for a in rep["actions"]}
    assert acts["rollback"]["state"] == "executed"
    assert acts["rollback"]["params"]["release"] == "patient-portal", acts["rollback"]
    assert (acts["rollback"]["params"]["from_revision"], acts["rollback"]["params"]["to_revision"]) == (8, 7)
    # every proposal names patient-portal's targets, none the gateway's or the pharmacy's
    for a in rep["actions"]:
        named = {a["params"].get(k) for k in ("release", "deployment") if a["params"].get(k)}
        assert named <= {"patient-portal"}, a
    assert [a["id"] for a in rep["actions"] if a["state"] == "executed"] == ["rollback"]


def test_two_incidents_approving_one_rollback_at_once_give_one_rollback_and_the_other_says_why(drills):
    code, out, err = drills["two-incidents"]
    assert code == 0, err[-3000:]
    assert "DRILL PASSED: one rollback" in err
    rep = json.loads(out)  # the incident whose rollback did not run
    acts = {a["id"]: a for a in rep["actions"]}
    assert acts["rollback"]["state"] == "superseded"
    assert "moved" in acts["rollback"]["result"] and "revision 13 is current" in acts["rollback"]["result"]
    assert acts["rollback-2"]["state"] == "proposed" and "only if revision 13 did not fix it" in acts["rollback-2"]["reason"]
    events = [e["event"] for e in rep["timeline"]]
    assert "Not run rollback: the world moved since the decision" in events
    assert rep["status"] == "resolved"


def test_a_shared_database_down_gives_one_database_proposal_and_lists_the_affected_services(drills):
    code, out, err = drills["shared-db-outage"]
    assert code == 0, err[-3000:]
    rep = json.loads(out)
    a = rep["assessment"]
    assert a["unhealthy_services"] == ["api-gateway", "patient-portal", "pharmacy"]
    assert (a["shared_cause"], a["shared_cause_of"]) == ("healthcare-db", ["api-gateway", "patient-portal", "pharmacy"])
    database = [x for x in rep["actions"] if x["kind"] == "db_check" or x["params"].get("workflow") == "DatabaseConnectionPlaybook"]
    assert [x["id"] for x in database] == ["db-connections-playbook"] and database[0]["recommended"], rep["actions"]
    assert not [x for x in rep["actions"] if x["kind"] == "helm_rollback"]
    assert not [x for x in rep["actions"] if x["state"] == "executed"]  # the drill's IC hands it to the restore
    assert rep["status"] == "resolved_unverified"
