"""A worker killed with SIGKILL mid-mitigation loses nothing and repeats no side effect."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import kmock

from activities.helm import HelmActivities
from domain.cluster import HelmQuery
from sandbox.helm_cli import configmap_name
from sandbox.scenarios import GATEWAY, NAMESPACE, RELEASE, sandbox_environment
from sandbox.worker_process import kill9, spawn_worker, stop
from tests.support.polling import until
from tests.support.sandbox_incident import approve_only, resolve_when_healthy, start_p0
from tests.support.workflows import events


def _rollback_in_progress(sb) -> bool:
    """helm has written the pending rollback revision: the change is under way."""
    cm = sb.cluster.reconciler.get(kmock.resource("", "v1", "configmaps"), NAMESPACE, configmap_name(RELEASE))
    return cm is not None and json.loads(cm.raw["data"]["history"])[-1]["status"] == "pending-rollback"


def _started(desc, name: str) -> bool:
    return any(pa.activity_type.name == name and pa.state == 2  # PENDING_ACTIVITY_STATE_STARTED
               for pa in desc.raw_description.pending_activities)


async def test_sigkill_mid_rollback_then_a_new_worker_finishes_exactly_once(dev_env):
    tq = f"crash-{uuid.uuid4().hex[:6]}"
    async with sandbox_environment("bad-deploy") as sb:
        address = dev_env.client.service_client.config.target_host
        first = spawn_worker(address, sb.config_path, tq)
        second = None
        try:
            iid, h = await start_p0(dev_env.client, tq, "CRASH")
            await approve_only(dev_env.client, h)
            # steady, short intervals: the kill must land while the rollback is under way
            await until(h.describe, lambda d: _started(d, "helm_rollback"), "activity helm_rollback started", timeout=60,
                        poll=0.05, max_poll=0.05)
            await until(lambda: _rollback_in_progress(sb), what="helm's rollback to start", timeout=60, poll=0.02,
                        max_poll=0.02)
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
        pages = [(c.json["event_action"], c.json["dedup_key"]) for c in sb.receiver.effects("pagerduty")
                 if "event_action" in c.json]  # not the change event
        changes = [c.json["payload"]["custom_details"]["change"] for c in sb.receiver.effects("pagerduty")
                   if "event_action" not in c.json]
        assert changes == ["rollback"]  # on the service's PagerDuty timeline, once
        assert pages == [("trigger", f"{iid}:on_call:open"), ("resolve", f"{iid}:on_call:open")]  # one page, resolved

