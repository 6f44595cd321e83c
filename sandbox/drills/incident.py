"""The `incident` drill driver (bad-deploy, db-outage's incident path and the like): the IC
approves what the scenario needs, turns down the rest and resolves once healthy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from domain.incident import ActionState, IncidentInput, IncidentReport, Resolution
from domain.severity import Severity
from sandbox.drills.kit import IC, DrillContext, DrillOutcome, TemporalIC, Watcher
from starters import service


@asynccontextmanager
async def commander(ctx: DrillContext) -> AsyncIterator[Any]:
    """The IC's hands: Temporal updates, or clicks in the incident channel (sandbox.drills.slack_ic)."""
    if ctx.via == "slack":
        from sandbox.drills.slack_ic import slack_ic

        async with slack_ic(ctx) as ic:
            yield ic
    else:
        yield TemporalIC(ctx)


async def drive_incident(ctx: DrillContext) -> DrillOutcome:
    """P0/P1 response: approve the scenario's actions, reject the rest, resolve when healthy."""
    from workflows.incident_response import IncidentResponseWorkflow

    sc = ctx.sandbox.scenario
    iid = ctx.new_id()
    inp = IncidentInput(incident_id=iid, title=sc.title, severity=Severity(sc.severity), commander=IC, requested_by="drill",
                        **({"service": sc.service} if sc.service else {}))
    handle = await service.start_incident(ctx.client, inp, ctx.task_queue)
    ctx.say(f"Incident {iid} — watch it at {ctx.link(iid)}", highlight=False, soft_wrap=True)
    w = Watcher(handle, ctx.say, IncidentResponseWorkflow.status)
    rep = await w.until(lambda r: bool(r.actions) or r.phase.value == "mitigation", "proposals")
    # The IC approves what the scenario needs (CodeBlue's recommendation, when it ranks); each
    # runs at once, and the proposals the re-checked evidence makes moot are withdrawn.
    approved = set(sc.approve) & {a.id for a in rep.actions}
    best = next((a.id for a in rep.actions if a.recommended), None)
    if best and best not in approved:
        ctx.say(f"note: CodeBlue recommends {best}, the scenario approves {', '.join(sorted(approved))}", highlight=False)
    async with commander(ctx) as ic:
        for a in rep.actions:
            if a.id in approved:
                await ic.approve(iid, a.id, "drill: the evidence supports it")
        rep = await w.until(lambda r: all(a.state != ActionState.APPROVED for a in r.actions if a.id in approved),
                            "the approved actions to finish")
        for aid in sorted(approved):
            await ic.settled(iid, aid)
        for a in rep.actions:  # what the re-check left waiting, the IC turns down
            if a.state == ActionState.PROPOSED:
                await ic.reject(iid, a.id, f"drill: only {', '.join(sorted(approved))} is needed")
                await ic.settled(iid, a.id)
    summary = f"drill '{sc.name}': mitigated by {', '.join(sorted(approved)) or 'nothing'}"
    for _ in range(30):  # the sandbox needs a moment to roll pods after a change
        if (await service.resolve(ctx.client, iid, Resolution(by=IC, summary=summary))).resolved:
            break
        await w.poll()
        await asyncio.sleep(1)
    report: IncidentReport = await handle.result()
    await w.poll()
    ctx.interactions = ic.report()
    executed = {a.id for a in report.actions if a.state == ActionState.EXECUTED}
    ok = report.status == "resolved" and bool(report.verified) and bool(approved) and approved <= executed
    return DrillOutcome(report, ok, f"{report.status}, verified={report.verified}, executed={sorted(executed)}", iid)
