"""The `shared-db` drill driver: every service fails because their one database does. The drill
checks CodeBlue's reading of it (the shared cause named, the affected services listed, one
database proposal and it recommended, no service's rollback), then its IC hands the database
to the restore procedure and closes the incident unverified."""

from __future__ import annotations

from domain.incident import ActionKind, ActionState, IncidentInput, IncidentReport, Resolution
from domain.procedures import DB_CONNECTIONS
from domain.severity import Severity
from sandbox.drills.kit import IC, DrillContext, DrillOutcome, TemporalIC, Watcher
from starters import service

HANDED_OVER = "drill: the database is down for every service; the database team restores healthcare-db (codeblue db restore)"


def database_proposals(rep: IncidentReport) -> list[str]:
    return [a.id for a in rep.actions if a.kind == ActionKind.DB_CHECK
            or (a.kind == ActionKind.PLAYBOOK and a.params.get("workflow") == DB_CONNECTIONS.workflow)]


async def drive_shared_database(ctx: DrillContext) -> DrillOutcome:
    from workflows.incident_response import IncidentResponseWorkflow

    sc = ctx.sandbox.scenario
    iid = ctx.new_id()
    inp = IncidentInput(incident_id=iid, title=sc.title, severity=Severity(sc.severity), commander=IC, requested_by="drill",
                        service=sc.service or "api-gateway")
    handle = await service.start_incident(ctx.client, inp, ctx.task_queue)
    ctx.say(f"Incident {iid} — watch it at {ctx.link(iid)}", highlight=False, soft_wrap=True)
    w = Watcher(handle, ctx.say, IncidentResponseWorkflow.status)
    rep = await w.until(lambda r: bool(r.actions), "proposals")
    a = rep.assessment or {}
    db = database_proposals(rep)
    best = next((x.id for x in rep.actions if x.recommended), None)
    rollbacks = [x.id for x in rep.actions if x.kind == ActionKind.HELM_ROLLBACK]
    found = [
        (a.get("shared_cause") == "healthcare-db", f"shared cause {a.get('shared_cause')}"),
        (len(a.get("unhealthy_services") or []) == 3, f"affected {a.get('unhealthy_services')}"),
        (len(db) == 1, f"database proposals {db}"),
        (best in db, f"recommended {best}"),
        (not rollbacks, f"rollbacks {rollbacks}"),
    ]
    ic = TemporalIC(ctx)
    for x in rep.actions:
        if x.state == ActionState.PROPOSED:
            await ic.reject(iid, x.id, HANDED_OVER)
            await ic.settled(iid, x.id)
    await service.resolve(ctx.client, iid, Resolution(by=IC, summary=HANDED_OVER, force=True))
    report: IncidentReport = await handle.result()
    await w.poll()
    ok = all(good for good, _ in found) and report.status == "resolved_unverified"
    return DrillOutcome(report, ok, "; ".join(what for _, what in found) + f"; {report.status}", iid)
