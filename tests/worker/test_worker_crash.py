"""A worker killed with SIGKILL mid-mitigation loses nothing and repeats no side effect."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import kmock

from activities.helm import HelmActivities
from domain.cluster import HelmQuery
from sandbox.helm_cli import configmap_name
from sandbox.scenarios import GATEWAY, NAMESPACE, RELEASE, sandbox_environment
from sandbox.worker_process import kill9, spawn_worker, stop
from tests.sandbox_incident import approve_only, resolve_when_healthy, start_p0
from tests.workflow_helpers import events, until


async def _rollback_in_progress(sb, timeout: float = 60) -> None:
    """Wait until helm has written the pending rollback revision: the change is under way."""
    cms = kmock.resource("", "v1", "configmaps")
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        cm = sb.cluster.reconciler.get(cms, NAMESPACE, configmap_name(RELEASE))
        if cm is not None and json.loads(cm.raw["data"]["history"])[-1]["status"] == "pending-rollback":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("helm rollback never started")


async def _activity_started(handle, name: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        desc = await handle.describe()
        for pa in desc.raw_description.pending_activities:
            if pa.activity_type.name == name and pa.state == 2:  # PENDING_ACTIVITY_STATE_STARTED
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"activity {name} never started")


async def test_sigkill_mid_rollback_then_a_new_worker_finishes_exactly_once(dev_env):
    tq = f"crash-{uuid.uuid4().hex[:6]}"
    async with sandbox_environment("bad-deploy") as sb:
        address = dev_env.client.service_client.config.target_host
        first = spawn_worker(address, sb.config_path, tq)
        second = None
        try:
            iid, h = await start_p0(dev_env.client, tq, "CRASH")
            await approve_only(dev_env.client, h)
            await _activity_started(h, "helm_rollback")
            await _rollback_in_progress(sb)
            kill9(first)
            second = spawn_worker(address, sb.config_path, tq)
            await until(h, lambda r: r.actions[0].state.value == "executed", "rollback executed by the new worker", timeout=90)
            await resolve_when_healthy(dev_env.client, iid)
            report = await h.result()
        finally:
            stop(first, second)

        assert report.status == "resolved" and report.verified
        ev = events(report)
        for step in ("Immediate actions complete", "Assessment complete", "Approved rollback", "Executed rollback", "Incident resolved"):
            assert any(e.startswith(step) for e in ev), step
        # exactly one rollback revision in the release history
        assert sb.config.kubernetes.kubeconfig is not None  # the sandbox's
        helm = HelmActivities(sb.config.helm.command, {"KUBECONFIG": sb.config.kubernetes.kubeconfig})
        history = await helm.helm_history(HelmQuery(release=RELEASE, namespace=NAMESPACE))
        assert [r.description for r in history.revisions].count("Rollback to 11") == 1, history
        assert sb.cluster.gateway_healthy(NAMESPACE, GATEWAY)
        # every notification was applied once: no repeated page, status update or message
        applied = Counter((c.channel, c.idempotency_key) for c in sb.receiver.calls if c.method != "GET" and not c.duplicate and 200 <= c.status < 300)
        assert applied and max(applied.values()) == 1, applied
        assert len(sb.receiver.incidents) == 1
        pages = [(c.json["event_action"], c.json["dedup_key"]) for c in sb.receiver.effects("pagerduty")]
        assert pages == [("trigger", f"{iid}:on_call:open"), ("resolve", f"{iid}:on_call:open")]  # one page, resolved

