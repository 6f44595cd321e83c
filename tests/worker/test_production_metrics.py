"""A production worker (`codeblue worker` with CODEBLUE_METRICS_BIND) serves the SDK's
Prometheus metrics and CodeBlue's own after an incident runs through it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid

import httpx

from activities.http_client import tls_context
from sandbox.scenarios import sandbox_environment
from starters.ports import free_port
from tests.support.polling import until
from tests.support.sandbox_incident import approve_only, resolve_when_healthy, start_p0


def _spawn(env, cfg_path: str, tq: str, metrics: str, log) -> subprocess.Popen:
    codeblue = shutil.which("codeblue")
    assert codeblue, "codeblue console script not on PATH"
    return subprocess.Popen(
        [codeblue, "worker"],
        env={
            **os.environ,
            "CODEBLUE_CONFIG": cfg_path,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": tq,
            "CODEBLUE_METRICS_BIND": metrics,
            "CODEBLUE_LOG_FORMAT": "json",
        },
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


async def _scrape(url: str, want: str, timeout: float = 30) -> str:
    """The exposition text once it contains `want` (metrics are exported periodically)."""
    async with httpx.AsyncClient(verify=tls_context()) as http:
        async def exposition() -> str:
            return (await http.get(url)).text

        return await until(exposition, lambda text: want in text, f"{want!r} at {url}", timeout=timeout, poll=0.5,
                           retry=(httpx.TransportError,))


def _samples(text: str, name: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(name + "{") or ln.startswith(name + " ")]


async def test_worker_serves_sdk_and_codeblue_metrics_after_an_incident(dev_env, tmp_path):
    tq = f"metrics-{uuid.uuid4().hex[:6]}"
    bind = f"127.0.0.1:{free_port()}"
    url = f"http://{bind}/metrics"
    async with sandbox_environment("bad-deploy") as sb:
        log_path = tmp_path / "worker.log"
        log = log_path.open("w")
        proc = _spawn(dev_env, sb.config_path, tq, bind, log)
        try:
            iid, h = await start_p0(dev_env.client, tq, "MET")
            await approve_only(dev_env.client, h)
            await until(h, lambda r: r.actions[0].state.value == "executed", "rollback executed", timeout=90)
            await resolve_when_healthy(dev_env.client, iid)
            report = await h.result()
            assert report.status == "resolved"
            text = await _scrape(url, "codeblue_mitigations")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()

    # the SDK's own worker metrics
    assert _samples(text, "temporal_workflow_completed") or _samples(text, "temporal_workflow_task_execution_latency_count"), text[:2000]
    assert any("temporal_activity_execution_latency" in ln for ln in text.splitlines())
    # CodeBlue's
    opened = _samples(text, "codeblue_incidents_opened")
    assert any('severity="P0"' in ln and ln.rstrip().endswith(" 1") for ln in opened), opened
    sla = _samples(text, "codeblue_sla")
    assert any('clock="diagnostics"' in ln and 'outcome="met"' in ln for ln in sla), sla
    mitigations = _samples(text, "codeblue_mitigations")
    assert any('kind="helm_rollback"' in ln and 'outcome="executed"' in ln for ln in mitigations), mitigations
    waits = _samples(text, "codeblue_approval_wait_seconds_count")
    assert any('decision="approved"' in ln for ln in waits) and any('decision="rejected"' in ln for ln in waits), waits

    # structured logs: every log line is JSON; the incident's lines carry its ID
    # (but the CLI's one start line, which says where the worker runs, to a person)
    lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
    assert [ln for ln in lines if not ln.startswith("{")] == [ln for ln in lines if ln.startswith("worker on ")]
    records = [json.loads(ln) for ln in lines if not ln.startswith("worker on ")]
    mine = [r for r in records if r.get("incident_id") == iid]
    assert any("Approved rollback" in r["message"] for r in mine), records[:5]
    assert {r.get("workflow_type") for r in mine} == {"IncidentResponseWorkflow"}
    assert all("incident_id" in r for r in records if r["logger"].startswith("temporalio.workflow"))
