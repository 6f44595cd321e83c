"""Drill drivers for complete service recovery: `failed-redeploy`."""

from __future__ import annotations

from domain.incident import ActionState, Decision, IncidentReport
from domain.service_recovery import RecoveryInput
from sandbox.drills.kit import IC, DrillContext, DrillOutcome, Watcher
from starters import service
from starters.service_recovery import start_recovery


async def drive_failed_redeploy(ctx: DrillContext) -> DrillOutcome:
    """Redeploy the hotfix; passes only if CodeBlue rolled it back and verified the service,
    and the sandbox agrees (gateway on the pre-upgrade tag, every replica ready)."""
    from sandbox.scenario_service_recovery import HOTFIX_TAG, STABLE_TAG, gateway_tag
    from sandbox.scenarios import GATEWAY, NAMESPACE
    from workflows.service_recovery import ServiceRecoveryWorkflow

    iid = ctx.new_id()
    inp = RecoveryInput(incident_id=iid, requested_by="drill", commander=IC, target_tag=HOTFIX_TAG)
    handle = await start_recovery(ctx.client, inp, ctx.task_queue)
    ctx.say(f"Service recovery {handle.id} — watch it at {ctx.link(handle.id)}", highlight=False, soft_wrap=True)
    w = Watcher(handle, ctx.say, ServiceRecoveryWorkflow.status)
    await w.until(lambda r: bool(r.actions), "the redeploy proposal")
    await service.execute_update(
        ctx.client, handle.id, ServiceRecoveryWorkflow.decide,
        Decision(action_id="redeploy", approve=True, by=IC, reason="drill: ship the hotfix"), "decision",
    )
    report: IncidentReport = await handle.result()
    await w.poll()
    sb = ctx.sandbox
    tag = gateway_tag(sb)
    healthy = sb.cluster.gateway_healthy(NAMESPACE, GATEWAY)
    act = report.actions[0] if report.actions else None
    events = {e.event for e in report.timeline}
    ok = (
        act is not None
        and act.state == ActionState.COMPENSATED
        and "Compensated redeploy" in events
        and report.status == "rolled_back"
        and bool(report.verified)
        and tag == STABLE_TAG
        and healthy
    )
    detail = (
        f"{report.status}, redeploy {act.state.value if act else 'missing'}, verified={report.verified}, "
        f"gateway on {tag} ({'healthy' if healthy else 'unhealthy'})"
    )
    return DrillOutcome(report, ok, detail, handle.id)
