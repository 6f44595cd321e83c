"""The `two-incidents` drill driver: two incidents about one bad release, both ICs approving its
rollback at once. The blast-radius guard lets one roll it back; the other waits for it, finds
the release moved and does not roll back again, saying so on its timeline."""

from __future__ import annotations

import asyncio

from domain.incident import ActionState, Decision, IncidentInput, IncidentReport, Resolution
from domain.severity import Severity
from sandbox.drills.kit import IC, DrillContext, DrillOutcome, Watcher
from starters import service


def _rollback_state(r: IncidentReport) -> ActionState | None:
    return next((a.state for a in r.actions if a.id == "rollback"), None)


async def drive_two_incidents(ctx: DrillContext) -> DrillOutcome:
    from workflows.incident_response import IncidentResponseWorkflow

    sc = ctx.sandbox.scenario
    handles, watchers = [], []
    for who in ("first", "second"):
        iid = ctx.new_id()
        inp = IncidentInput(incident_id=iid, title=f"{sc.title} ({who} report)", severity=Severity(sc.severity),
                            commander=IC, requested_by="drill", service=sc.service or "api-gateway")
        handles.append(await service.start_incident(ctx.client, inp, ctx.task_queue))
        watchers.append(Watcher(handles[-1], ctx.say, IncidentResponseWorkflow.status))
        ctx.say(f"Incident {iid} — watch it at {ctx.link(iid)}", highlight=False, soft_wrap=True)
    await asyncio.gather(*(w.until(lambda r: _rollback_state(r) is not None, "the rollback proposal") for w in watchers))
    ctx.say("Both ICs approve the rollback at once", highlight=False)
    await asyncio.gather(*(service.decide(ctx.client, h.id, Decision(action_id="rollback", approve=True, by=IC,
                                                                      reason="drill: approved in both incidents"))
                           for h in handles))
    reps = await asyncio.gather(*(w.until(lambda r: _rollback_state(r) not in (ActionState.APPROVED, ActionState.PROPOSED),
                                          "the rollback to finish") for w in watchers))
    states = [_rollback_state(r) for r in reps]
    for h, w in zip(handles, watchers, strict=True):
        for _ in range(30):  # the sandbox needs a moment to roll pods after the rollback
            res = await service.resolve(ctx.client, h.id, Resolution(by=IC, summary="drill: one rollback for both"))
            if res.resolved:
                break
            await w.poll()
            await asyncio.sleep(1)
    reports: list[IncidentReport] = [await h.result() for h in handles]
    ran = [r for r in reports if _rollback_state(r) == ActionState.EXECUTED]
    held = [r for r in reports if _rollback_state(r) == ActionState.SUPERSEDED]
    ok = (sorted(s.value for s in states if s) == ["executed", "superseded"] and len(ran) == 1 and len(held) == 1
          and all(r.status == "resolved" for r in reports))
    # the report shown is the incident that did not roll back: its timeline says why
    shown = held[0] if held else reports[-1]
    other = ran[0].incident_id if ran else "neither"
    detail = (f"one rollback (by {other}); {shown.incident_id}'s was not run: "
              + next((a.result or "" for a in shown.actions if a.id == "rollback"), ""))
    return DrillOutcome(shown, ok, detail, shown.incident_id)
