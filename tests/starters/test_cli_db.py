"""`codeblue db check` and `codeblue drill db-outage --json` as a user runs them."""

from __future__ import annotations

import asyncio
import json

import yaml

from domain.config import CodeBlueConfig, KubernetesConfig
from sandbox.cluster import SandboxCluster
from tests.support.cli import codeblue


async def test_db_check_reports_ok_and_failure_in_one_line(tmp_path):
    async with SandboxCluster() as cluster:
        await cluster.seed_healthcare_prod(database_url="postgresql://postgres:pw-not-shown@127.0.0.1:5432/postgres")
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(CodeBlueConfig(kubernetes=KubernetesConfig(kubeconfig=str(cluster.kubeconfig_path))).model_dump(mode="json")))
        ok = await asyncio.to_thread(codeblue, "db", "check", "-c", str(cfg), timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert "ok: connected to 127.0.0.1:5432/postgres; SELECT 1 ok" in ok.stdout
        await cluster.seed_healthcare_prod(database_url="postgresql://postgres:pw-not-shown@127.0.0.1:1/postgres")
        bad = await asyncio.to_thread(codeblue, "db", "check", "-c", str(cfg), timeout=60)
    assert bad.returncode == 1 and "FAILED: cannot connect to 127.0.0.1:1/postgres" in bad.stderr
    assert "pw-not-shown" not in bad.stderr + ok.stdout and "Traceback" not in bad.stderr


def test_drill_db_outage_restores_verifies_and_reports_both_gates():
    r = codeblue("drill", "db-outage", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["status"] == "restored" and rep["verified"] is True
    assert [(a["id"], a["state"], a["approved_by"]) for a in rep["actions"]] == [
        ("restore", "executed", "drill-ic"), ("cutover", "executed", "drill-ic")]
    events = [e["event"] for e in rep["timeline"]]
    for step in ("Preflight passed", "Approved restore (db_restore)", "Restored database verified",
                 "Approved cutover (db_cutover)", "Database secret patched", "Executed cutover"):
        assert step in events, step
    assert set(rep["assessment"]["database_restore"]["step_seconds"]) >= {"preflight", "restore", "wait", "verify", "cutover"}
    assert "DRILL PASSED" in r.stderr and "sandbox-db-pw" not in r.stdout + r.stderr
