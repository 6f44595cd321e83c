"""Scale-out: two workers on one task queue; the one running the rollback is SIGKILLed
mid-incident and the other finishes the incident, with the rollback applied once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid

from activities.helm import HelmActivities
from domain.cluster import HelmQuery
from sandbox.scenarios import GATEWAY, NAMESPACE, RELEASE, sandbox_environment
from tests.support.polling import until
from tests.support.sandbox_incident import approve_only, resolve_when_healthy, start_p0


def _worker(env, cfg_path: str, tq: str) -> subprocess.Popen:
    codeblue = shutil.which("codeblue")
    assert codeblue, "codeblue console script not on PATH"
    return subprocess.Popen(
        [codeblue, "worker"],
        env={**os.environ, "CODEBLUE_CONFIG": cfg_path, "TEMPORAL_TASK_QUEUE": tq,
             "TEMPORAL_ADDRESS": env.client.service_client.config.target_host},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _runner(desc, activity: str) -> int | None:
    """PID of the worker that started `activity` (identity is `pid@host` by default), if one has."""
    for pa in desc.raw_description.pending_activities:
        if pa.activity_type.name == activity and pa.state == 2 and pa.last_worker_identity:
            return int(pa.last_worker_identity.split("@", 1)[0])
    return None


async def test_two_workers_one_killed_mid_incident_the_other_finishes_it(dev_env):
    tq = f"scale-{uuid.uuid4().hex[:6]}"
    async with sandbox_environment("bad-deploy") as sb:
        workers = [_worker(dev_env, sb.config_path, tq) for _ in range(2)]
        try:
            iid, h = await start_p0(dev_env.client, tq, "SCALE")
            await approve_only(dev_env.client, h)
            # a steady 50 ms: the kill must land while the rollback runs
            desc = await until(h.describe, lambda d: _runner(d, "helm_rollback") is not None, "helm_rollback started",
                               timeout=60, poll=0.05, max_poll=0.05)
            pid = _runner(desc, "helm_rollback")
            victim = next(w for w in workers if w.pid == pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            survivor = next(w for w in workers if w is not victim)
            assert survivor.poll() is None
            await until(h, lambda r: r.actions[0].state.value == "executed", "rollback executed by the survivor", timeout=120)
            await resolve_when_healthy(dev_env.client, iid)
            report = await h.result()
        finally:
            for p in workers:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(15)
                    except subprocess.TimeoutExpired:
                        p.kill()
        assert report.status == "resolved" and report.verified
        assert sb.config.kubernetes.kubeconfig is not None  # the sandbox's
        helm = HelmActivities(sb.config.helm.command, {"KUBECONFIG": sb.config.kubernetes.kubeconfig})
        history = await helm.helm_history(HelmQuery(release=RELEASE, namespace=NAMESPACE))
        assert [r.description for r in history.revisions].count("Rollback to 11") == 1, history
        assert sb.cluster.gateway_healthy(NAMESPACE, GATEWAY)
