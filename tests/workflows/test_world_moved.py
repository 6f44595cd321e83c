"""Act only on the world the IC approved: a release, replica count or pod template that moved
between the decision and the step is left alone, and the step is proposed again with the new
facts. Real activities against the bad-deploy sandbox (helm stand-in, Kubernetes emulator)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import httpx
import kubernetes
from temporalio.worker import Worker

from activities.helm import HelmActivities
from activities.http_client import tls_context
from domain.cluster import HelmQuery
from domain.incident import ActionState, Resolution, TimelineKind
from sandbox.scenarios import GATEWAY, NAMESPACE, RELEASE, sandbox_environment
from starters import service
from tests.support.cluster import deployment
from tests.support.polling import until
from tests.support.sandbox_incident import start_p0
from tests.support.workflows import decide_all, events
from worker.main import activities_for
from workflows.blast_radius import BlastRadiusGuard
from workflows.incident_response import IncidentResponseWorkflow

REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


async def _hotfix(sb) -> None:
    """Someone ships v1.5.1 by hand while the IC is deciding: release revision 13."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox.helm_cli", "upgrade", RELEASE, "healthcare-platform", "-n", NAMESPACE,
        "--set", "image.tag=v1.5.1", "--description", "hotfix by hand", "--wait", "--timeout", "30s",
        env={**os.environ, "KUBECONFIG": str(sb.cluster.kubeconfig_path)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


async def test_moved_release_replicas_and_pods_are_left_alone_and_proposed_again(dev_env):
    async with sandbox_environment("bad-deploy") as sb, httpx.AsyncClient(verify=tls_context(), timeout=5) as http:
        sb.config.mitigation.scale_replicas = 6
        tq = f"moved-{uuid.uuid4().hex[:6]}"
        async with Worker(dev_env.client, task_queue=tq, workflows=[IncidentResponseWorkflow, BlastRadiusGuard],
                          activities=activities_for(sb.config, http)):
            iid, h = await start_p0(dev_env.client, tq, "MOVED")
            rep = await until(h, lambda r: {"rollback", "restart"} <= {a.id for a in r.actions}, "proposals", 90)
            seen = {a.id: a.params for a in rep.actions}
            assert seen["rollback"]["from_revision"] == 12
            # the world moves after the IC read the proposals, before the steps run
            await _hotfix(sb)
            await sb.cluster.reconcile()
            dep = deployment(sb.cluster, NAMESPACE, GATEWAY)
            assert dep["metadata"]["annotations"][REVISION] != seen["restart"]["revision"]
            by_hand = int(dep["spec"]["replicas"]) + 1
            await asyncio.to_thread(_scale_by_hand, sb, by_hand)
            await sb.cluster.reconcile()
            template_before = dict(deployment(sb.cluster, NAMESPACE, GATEWAY)["spec"]["template"]["metadata"].get("annotations") or {})

            await decide_all(dev_env, h, {"rollback", "scale", "restart"}, by="ic")
            rep = await until(h, lambda r: {"rollback-2", "restart-2"} <= {a.id for a in r.actions}, "new proposals", 60)
            acts = {a.id: a for a in rep.actions}
            # nothing ran: no rollback revision, the hand-set count kept, the pods not restarted
            history = await HelmActivities(sb.config.helm.command, {"KUBECONFIG": str(sb.cluster.kubeconfig_path)}).helm_history(
                HelmQuery(release=RELEASE, namespace=NAMESPACE))
            assert [r.description for r in history.revisions if r.revision > 12] == ["hotfix by hand"]
            dep = deployment(sb.cluster, NAMESPACE, GATEWAY)
            assert dep["spec"]["replicas"] == by_hand
            assert (dep["spec"]["template"]["metadata"].get("annotations") or {}).get(RESTARTED_AT) == template_before.get(RESTARTED_AT)
            for old in ("rollback", "scale", "restart"):
                assert acts[old].state == ActionState.SUPERSEDED, (old, acts[old])
                assert "moved" in (acts[old].result or ""), acts[old].result
            # the new proposals name the world as it is now
            assert acts["rollback-2"].params["from_revision"] == 13
            assert acts["rollback-2"].params["to_revision"] == 11
            assert "revision 13" in acts["rollback-2"].reason
            assert acts["restart-2"].params["revision"] == dep["metadata"]["annotations"][REVISION]
            assert acts["scale-2"].params["from_replicas"] == by_hand
            assert acts["rollback-2"].state == ActionState.PROPOSED
            ev = events(rep)
            assert "Not run rollback: the world moved since the decision" in ev
            assert TimelineKind.COMPENSATION not in {e.kind for e in rep.timeline}  # nothing was undone
            await service.resolve(dev_env.client, iid, Resolution(by="ic", summary="hotfix did it", force=True))
            await h.result()


def _scale_by_hand(sb, replicas: int) -> None:
    """`kubectl scale` by a responder (blocking client: run in a thread)."""
    api = sb.cluster.api_client()
    try:
        kubernetes.client.AppsV1Api(api).patch_namespaced_deployment_scale(GATEWAY, NAMESPACE, {"spec": {"replicas": replicas}})
    finally:
        api.close()
