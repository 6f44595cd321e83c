"""`codeblue drill`: the runbook end to end on a sandbox, with CodeBlue playing the IC."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

from rich.console import Console
from temporalio.client import WorkflowHandle

from domain.incident import ActionState, Decision, IncidentInput, IncidentReport, Resolution
from domain.severity import Severity
from starters import service
from starters.devserver import dev_server, ui_base
from starters.render import print_report, timeline_line
from starters.service import CodeBlueError
from worker.main import running_worker
from workflows.incident_response import IncidentResponseWorkflow

IC = "drill-ic"
STEP_TIMEOUT = 90.0


class _Timeline:
    """Prints timeline entries as they appear."""

    def __init__(self, handle: WorkflowHandle, say) -> None:
        self.handle, self.say, self.seen = handle, say, 0

    async def poll(self) -> IncidentReport:
        rep: IncidentReport = await self.handle.query(IncidentResponseWorkflow.status)
        for e in rep.timeline[self.seen :]:
            self.say(timeline_line(e), highlight=False, soft_wrap=True)
        self.seen = len(rep.timeline)
        return rep

    async def until(self, pred, what: str) -> IncidentReport:
        loop = asyncio.get_running_loop()
        end = loop.time() + STEP_TIMEOUT
        while True:
            rep = await self.poll()
            if pred(rep):
                return rep
            if loop.time() > end:
                raise CodeBlueError(f"drill: timed out waiting for {what}")
            await asyncio.sleep(0.2)


async def drill(name: str, *, as_json: bool, keep: bool, out: Console, err: Console) -> int:
    from sandbox.scenarios import sandbox_environment, scenario

    try:
        sc = scenario(name)
    except ValueError as e:
        raise CodeBlueError(str(e)) from None
    say = err.print if as_json else out.print  # with --json, stdout carries only the report
    say(f"[bold]CodeBlue drill[/] '{sc.name}': {sc.description}")
    task_queue = f"codeblue-drill-{uuid.uuid4().hex[:6]}"
    async with sandbox_environment(name) as sb, dev_server() as env:
        ui = ui_base(env, None)
        async with running_worker(env.client, sb.config, task_queue):
            iid = f"DRILL-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
            inp = IncidentInput(
                incident_id=iid, title=sc.title, severity=Severity(sc.severity), commander=IC, requested_by="drill"
            )
            handle = await service.start_incident(env.client, inp, task_queue)
            ns = env.client.namespace
            say(f"Incident {iid} — watch it at {service.ui_link(ui, ns, iid)}", highlight=False)
            tl = _Timeline(handle, say)
            rep = await tl.until(lambda r: r.actions or r.phase.value == "mitigation" and not r.actions, "proposals")
            for a in rep.actions:
                if a.id in sc.approve:
                    d = Decision(action_id=a.id, approve=True, by=IC, reason="drill: the evidence supports it")
                else:
                    d = Decision(action_id=a.id, approve=False, by=IC, reason=f"drill: only {', '.join(sc.approve)} is needed")
                await service.decide(env.client, iid, d)
            approved = set(sc.approve) & {a.id for a in rep.actions}
            rep = await tl.until(
                lambda r: all(a.state not in (ActionState.PROPOSED, ActionState.APPROVED) for a in r.actions),
                "the approved actions to finish",
            )
            result = None
            for _ in range(30):  # the sandbox needs a moment to roll pods after the rollback
                result = await service.resolve(
                    env.client, iid, Resolution(by=IC, summary=f"drill '{sc.name}': mitigated by {', '.join(sorted(approved)) or 'nothing'}")
                )
                if result.resolved:
                    break
                await tl.poll()
                await asyncio.sleep(1)
            report: IncidentReport = await handle.result()
            await tl.poll()
            executed = {a.id for a in report.actions if a.state == ActionState.EXECUTED}
            ok = report.status == "resolved" and bool(report.verified) and approved <= executed and bool(approved)
            if as_json:
                print(report.model_dump_json(indent=2))
            else:
                out.print()
                print_report(report, out)
            say(
                ("[bold green]DRILL PASSED[/]" if ok else "[bold red]DRILL FAILED[/]")
                + f": {report.status}, verified={report.verified}, executed={sorted(executed)}",
                highlight=False,
            )
            say(f"UI: {service.ui_link(ui, ns, iid)}", highlight=False)
            if keep:
                say(f"--keep: Temporal UI at {ui}, server at {env.client.service_client.config.target_host}; Ctrl-C ends.")
                await asyncio.Event().wait()
    return 0 if ok else 1
