"""The `db-connections` drill driver (DatabaseConnectionPlaybook): approve the gateway restart
the playbook proposes, then check the sandbox."""

from __future__ import annotations

from domain.incident import Decision, IncidentReport
from sandbox.drills.kit import IC, DrillContext, DrillOutcome, Watcher
from starters import service


async def drive_db_connections(ctx: DrillContext) -> DrillOutcome:
    """Approve the gateway restart the playbook proposes; passes only if CodeBlue verified the
    fix and the sandbox agrees (every gateway replica ready, no pool still exhausted)."""
    from domain.db_connections import DbConnectionsInput
    from sandbox.scenarios import GATEWAY, NAMESPACE
    from starters.db_connections import start_db_connections
    from workflows.db_connections import DatabaseConnectionPlaybook

    iid = ctx.new_id("DBCONN")
    handle = await start_db_connections(
        ctx.client, DbConnectionsInput(incident_id=iid, requested_by="drill", commander=IC), ctx.task_queue)
    ctx.say(f"Database connection playbook {handle.id} — watch it at {ctx.link(handle.id)}", highlight=False, soft_wrap=True)
    w = Watcher(handle, ctx.say, DatabaseConnectionPlaybook.status)
    rep = await w.until(lambda r: bool(r.actions) or r.status != "open", "the playbook's proposal")
    if any(a.id == "restart" for a in rep.actions):
        await service.decide(ctx.client, handle.id,
                             Decision(action_id="restart", approve=True, by=IC, reason="drill: the pool is exhausted"))
    report: IncidentReport = await handle.result()
    await w.poll()
    healthy = ctx.sandbox.cluster.gateway_healthy(NAMESPACE, GATEWAY)
    restarted = any(a.id == "restart" and a.state.value == "executed" for a in report.actions)
    ok = report.status == "resolved" and bool(report.verified) and restarted and healthy
    return DrillOutcome(report, ok, f"{report.status}, verified={report.verified}, restarted={restarted}, gateway healthy={healthy}",
                        handle.id)
