"""The `db-restore` drill driver (scenario `db-outage`, DatabaseRestoreWorkflow): approve the
restore and the cutover, then check the sandbox."""

from __future__ import annotations

from domain.database_restore import DatabaseRestoreInput
from domain.incident import Decision, IncidentReport
from sandbox.drills.kit import IC, DrillContext, DrillOutcome, Watcher
from starters import database_restore, service

RESTORE_TIMEOUT = 180.0


async def drive_db_restore(ctx: DrillContext) -> DrillOutcome:
    """Approve the restore and the cutover; passes only if CodeBlue verified the cutover and
    the sandbox agrees (the Secret names the restored endpoint, every gateway replica ready)."""
    from sandbox.scenario_database_restore import DB_KEY, DB_SECRET, LOCAL_DB
    from sandbox.scenarios import GATEWAY, NAMESPACE
    from workflows.database_restore import DatabaseRestoreWorkflow

    iid = ctx.new_id("DB")
    handle = await database_restore.start_restore(
        ctx.client, DatabaseRestoreInput(incident_id=iid, requested_by="drill", commander=IC), ctx.task_queue)
    ctx.say(f"Database restore {handle.id} — watch it at {ctx.link(handle.id)}", highlight=False, soft_wrap=True)
    w = Watcher(handle, ctx.say, DatabaseRestoreWorkflow.status)
    for gate in ("restore", "cutover"):
        rep = await w.until(
            lambda r, g=gate: any(a.id == g for a in r.actions) or r.status != "open", f"the {gate} gate", RESTORE_TIMEOUT)
        if rep.status != "open":
            break
        await service.decide(ctx.client, handle.id, Decision(action_id=gate, approve=True, by=IC, reason="drill: approved"))
    report: IncidentReport = await handle.result()
    await w.poll()
    secret = ctx.sandbox.cluster.secret_value(NAMESPACE, DB_SECRET, DB_KEY) or ""
    on_restored = f"@{LOCAL_DB}/" in secret
    healthy = ctx.sandbox.cluster.gateway_healthy(NAMESPACE, GATEWAY)
    ok = report.status == "restored" and bool(report.verified) and on_restored and healthy
    return DrillOutcome(
        report, ok,
        f"{report.status}, verified={report.verified}, secret on restored endpoint={on_restored}, gateway healthy={healthy}",
        handle.id,
    )
