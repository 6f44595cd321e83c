"""Drill driver for the high-memory playbook: `memory-leak`."""

from __future__ import annotations

import asyncio

from domain.high_memory import MemoryInput, MemoryResolution
from domain.incident import ActionState, Decision, IncidentReport
from sandbox.drills.kit import IC, DrillContext, DrillOutcome, Watcher
from starters import service
from starters.high_memory import resolve_memory, start_memory_playbook


async def drive_memory_leak(ctx: DrillContext) -> DrillOutcome:
    """Leak while CodeBlue samples; approve scale + restart; resolve; passes when the leak was
    named, the scale ran and was undone on resolution (replicas back), and pods are ready."""
    from sandbox.scenario_high_memory import leak
    from sandbox.scenarios import GATEWAY, NAMESPACE
    from workflows.high_memory import HighMemoryPlaybook

    sb = ctx.sandbox

    def replicas() -> int:
        gateway = sb.cluster.deployment(NAMESPACE, GATEWAY)
        assert gateway is not None  # the scenario deployed it
        return gateway["spec"]["replicas"]

    before = replicas()

    async def leaking() -> None:
        while True:
            await asyncio.sleep(0.5)
            leak(sb)

    leaker = asyncio.ensure_future(leaking())
    iid = ctx.new_id()
    h = await start_memory_playbook(ctx.client, MemoryInput(incident_id=iid, requested_by="drill", commander=IC), ctx.task_queue)
    ctx.say(f"Memory playbook {h.id} — watch it at {ctx.link(h.id)}", highlight=False, soft_wrap=True)
    w = Watcher(h, ctx.say, HighMemoryPlaybook.status)
    try:
        rep = await w.until(lambda r: bool(r.actions) or "No action proposed" in {e.event for e in r.timeline}, "proposals")
    finally:
        leaker.cancel()
    for a in rep.actions:
        await service.execute_update(ctx.client, h.id, HighMemoryPlaybook.decide,
                              Decision(action_id=a.id, approve=True, by=IC, reason="drill"), "decision")
    await w.until(lambda r: all(a.state not in (ActionState.PROPOSED, ActionState.APPROVED) for a in r.actions),
                  "the approved actions", timeout=120)
    scaled = replicas()
    await resolve_memory(ctx.client, h.id, MemoryResolution(by=IC))
    report: IncidentReport = await h.result()
    await w.poll()
    after = replicas()
    for _ in range(50):
        if sb.cluster.gateway_healthy(NAMESPACE, GATEWAY):
            break
        await asyncio.sleep(0.2)
    healthy = sb.cluster.gateway_healthy(NAMESPACE, GATEWAY)
    states = {a.id: a.state for a in report.actions}
    ok = (bool(report.assessment.get("leak_suspects")) and states.get("scale") == ActionState.COMPENSATED
          and states.get("restart") == ActionState.EXECUTED and scaled == 10 and after == before and healthy
          and report.status == "resolved")
    report.verified = healthy
    detail = (f"{report.status}, suspects {len(report.assessment.get('leak_suspects', {}))}, replicas {before} -> {scaled} "
              f"-> {after}, pods {'ready' if healthy else 'not ready'}")
    return DrillOutcome(report, ok, detail, h.id)
