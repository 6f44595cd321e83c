"""The `db-connections` sandbox state, `codeblue drill db-connections --json` and
`codeblue playbook db-connections` as a user runs them."""

from __future__ import annotations

import asyncio
import json

from kubernetes import client as k8s

from sandbox.cluster import SandboxCluster
from sandbox.scenarios import GATEWAY, NAMESPACE
from tests.support.cli import codeblue


async def test_exhausted_pool_fails_readiness_until_a_rollout_restart():
    async with SandboxCluster() as cluster:
        await cluster.seed_healthcare_prod(namespace=NAMESPACE, gateway=GATEWAY, replicas=3)
        cluster.exhaust_connection_pool(NAMESPACE, GATEWAY)
        await cluster.reconcile()
        api = cluster.api_client()
        try:
            core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
            pods = cluster.pods(NAMESPACE, GATEWAY)
            assert len(pods) == 3 and not cluster.gateway_healthy(NAMESPACE, GATEWAY)
            assert all(p["status"]["phase"] == "Running" for p in pods)  # alive, just not ready
            log = await asyncio.to_thread(core.read_namespaced_pod_log, pods[0]["metadata"]["name"], NAMESPACE)
            assert "ERROR connection pool exhausted" in log
            patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}}
            await asyncio.to_thread(apps.patch_namespaced_deployment, GATEWAY, NAMESPACE, patch)
            await cluster.reconcile()
            fresh = cluster.pods(NAMESPACE, GATEWAY)
            assert cluster.gateway_healthy(NAMESPACE, GATEWAY)
            assert {p["metadata"]["name"] for p in fresh}.isdisjoint(p["metadata"]["name"] for p in pods)
            log = await asyncio.to_thread(core.read_namespaced_pod_log, fresh[0]["metadata"]["name"], NAMESPACE)
            assert "connection" not in log.lower()
        finally:
            await asyncio.to_thread(api.close)


def test_drill_db_connections_restarts_verifies_and_reports_json():
    r = codeblue("drill", "db-connections", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["status"] == "resolved" and rep["verified"] is True
    assert [(a["id"], a["kind"], a["state"], a["approved_by"]) for a in rep["actions"]] == [
        ("restart", "rollout_restart", "executed", "drill-ic")]
    events = [e["event"] for e in rep["timeline"]]
    for step in ("RDS instance", "Connection errors in gateway logs", "Database reachable from CodeBlue",
                 "Approved restart (rollout_restart)", "Executed restart", "Health check passed", "Verified"):
        assert step in events, step
    facts = rep["assessment"]["db_connections"]
    assert facts["logs"]["error_counts"]["pool_exhausted"] > 0 and facts["logs_after"]["error_counts"]["connection"] == 0
    assert "DRILL PASSED" in r.stderr and "pool exhausted: timed out" not in r.stdout


def test_playbook_db_connections_rejects_a_bad_incident_id_in_one_line():
    r = codeblue("playbook", "db-connections", "--incident", "bad id!", timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "incident ID" in lines[0], r.stderr
