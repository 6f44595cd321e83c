"""`codeblue drill [SCENARIO]`: a runbook procedure end to end on a sandbox, CodeBlue playing the IC.

Each scenario (sandbox.scenarios) names a driver here: the IC's moves for that procedure.
A driver registers with `@driver("name")` and returns a `DrillOutcome`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from domain.identity import ENV_KEY, keyring_from_env, new_key
from domain.incident import ActionState, Decision, IncidentInput, IncidentReport, Resolution
from domain.severity import Severity
from starters import service
from starters.devserver import dev_server, ui_base
from starters.render import print_report, timeline_line
from starters.service import CodeBlueError
from worker.identity import IdentityInterceptor
from worker.main import running_worker

if TYPE_CHECKING:
    from sandbox.scenarios import SandboxEnvironment

IC = "drill-ic"
STEP_TIMEOUT = 90.0


@dataclass
class DrillContext:
    client: Client
    sandbox: SandboxEnvironment
    task_queue: str
    ui: str
    say: Callable[..., None]
    via: str = "temporal"  # how the IC decides: signed Temporal updates, or signed Slack interactions
    interactions: list[dict[str, Any]] = field(default_factory=list)  # --via slack: what was sent

    def new_id(self, prefix: str = "DRILL") -> str:
        return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"

    def link(self, workflow_id: str) -> str:
        return service.ui_link(self.ui, self.client.namespace, workflow_id)


@dataclass
class DrillOutcome:
    report: IncidentReport
    ok: bool
    detail: str
    workflow_id: str


Driver = Callable[[DrillContext], Awaitable[DrillOutcome]]
DRIVERS: dict[str, Driver] = {}


def driver(name: str) -> Callable[[Driver], Driver]:
    def register(fn: Driver) -> Driver:
        DRIVERS[name] = fn
        return fn

    return register


QUERY_ATTEMPTS = 12
TRANSIENT_RPC = (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE)


class Watcher:
    """Prints a workflow's timeline entries as they appear (through its `status` query)."""

    def __init__(self, handle: WorkflowHandle, say, query) -> None:
        self.handle, self.say, self.query, self.seen = handle, say, query, 0

    async def poll(self) -> IncidentReport:
        # a query that meets a restarting server or a killed worker's sticky queue is asked again
        for attempt in range(QUERY_ATTEMPTS):
            try:
                rep: IncidentReport = await self.handle.query(self.query)
                break
            except RPCError as e:
                if e.status not in TRANSIENT_RPC or attempt == QUERY_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        for entry in rep.timeline[self.seen :]:
            self.say(timeline_line(entry), highlight=False, soft_wrap=True)
        self.seen = len(rep.timeline)
        return rep

    async def until(self, pred, what: str, timeout: float = STEP_TIMEOUT) -> IncidentReport:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            rep = await self.poll()
            if pred(rep):
                return rep
            if loop.time() > end:
                raise CodeBlueError(f"drill: timed out waiting for {what}")
            await asyncio.sleep(0.2)


class TemporalIC:
    """The IC's decisions as signed Temporal updates (`--via temporal`, the default)."""

    def __init__(self, ctx: DrillContext) -> None:
        self.ctx = ctx

    async def approve(self, iid: str, aid: str, reason: str) -> None:
        await service.decide(self.ctx.client, iid, Decision(action_id=aid, approve=True, by=IC, reason=reason))

    async def reject(self, iid: str, aid: str, reason: str) -> None:
        await service.decide(self.ctx.client, iid, Decision(action_id=aid, approve=False, by=IC, reason=reason))

    async def settled(self, iid: str, aid: str) -> None:
        """Nothing to wait for beyond the workflow's own state."""

    def report(self) -> list[dict[str, Any]]:
        return []


@asynccontextmanager
async def _commander(ctx: DrillContext) -> AsyncIterator[Any]:
    """The IC's hands: Temporal updates, or clicks in the incident channel (starters.drill_slack)."""
    if ctx.via == "slack":
        from starters.drill_slack import slack_ic

        async with slack_ic(ctx) as ic:
            yield ic
    else:
        yield TemporalIC(ctx)


@driver("incident")
async def drive_incident(ctx: DrillContext) -> DrillOutcome:
    """P0/P1 response: approve the scenario's actions, reject the rest, resolve when healthy."""
    from workflows.incident_response import IncidentResponseWorkflow

    sc = ctx.sandbox.scenario
    iid = ctx.new_id()
    inp = IncidentInput(incident_id=iid, title=sc.title, severity=Severity(sc.severity), commander=IC, requested_by="drill")
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
    async with _commander(ctx) as ic:
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


async def _postmortem(ctx: DrillContext, workflow_id: str) -> dict:
    """The incident's post-mortem draft, written where the engineer can open it."""
    from starters.service_postmortem import draft

    try:
        text = await draft(ctx.client, workflow_id)
    except Exception as e:  # noqa: BLE001 - a drill without a draft still reports
        return {"path": None, "text": None, "error": str(e).splitlines()[0] if str(e) else type(e).__name__}
    folder = Path(".codeblue") / "postmortems"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{workflow_id}.md"
    path.write_text(text)
    return {"path": str(path.resolve()), "text": text}


def _load_drivers() -> None:
    """Driver modules register on import; list them here."""
    import starters.drill_cache
    import starters.drill_db
    import starters.drill_memory
    import starters.drill_recovery  # noqa: F401


@contextmanager
def _json_stdout(as_json: bool) -> Iterator[Callable[[str], None]]:
    """With --json, stdout carries the report and nothing else: everything the process or its
    native parts (the SDK core's own log lines) write to fd 1 goes to stderr meanwhile."""
    if not as_json:
        yield print
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)

    def emit(text: str) -> None:
        os.write(saved, (text + "\n").encode())

    try:
        yield emit
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


VIAS = ("temporal", "slack")


async def drill(name: str, *, as_json: bool, keep: bool, out: Console, err: Console, via: str = "temporal") -> int:
    with _json_stdout(as_json) as emit:
        return await _drill(name, as_json=as_json, keep=keep, out=out, err=err, emit=emit, via=via)


async def _drill(name: str, *, as_json: bool, keep: bool, out: Console, err: Console,
                 emit: Callable[[str], None], via: str = "temporal") -> int:
    from sandbox.scenarios import sandbox_environment, scenario

    try:
        sc = scenario(name)
    except ValueError as e:
        raise CodeBlueError(str(e)) from None
    _load_drivers()
    drive = DRIVERS.get(sc.driver)
    if drive is None:
        raise CodeBlueError(f"scenario {name!r} needs drill driver {sc.driver!r}, which is not installed")
    if via not in VIAS:
        raise CodeBlueError(f"--via {via}: expected one of {', '.join(VIAS)}")
    if via == "slack" and sc.driver != "incident":
        from sandbox.scenarios import SCENARIOS

        slack_ok = sorted(n for n, s in SCENARIOS.items() if s.driver == "incident")
        raise CodeBlueError(f"--via slack plays the incident commander of {', '.join(slack_ok)}; "
                            f"scenario {name!r} decides through its playbook's own updates (use --via temporal)")
    say = err.print if as_json else out.print  # with --json, stdout carries only the report
    say(f"[bold]CodeBlue drill[/] '{sc.name}': {sc.description}")
    task_queue = f"codeblue-drill-{uuid.uuid4().hex[:6]}"
    # The drill plays named people (the IC, on-call): its client signs their commands with an
    # operator key of its own (worker.identity), made for this run unless one is set.
    os.environ.setdefault(ENV_KEY, new_key())
    signer = IdentityInterceptor(keyring_from_env(), via="", roles=["commander"])
    async with sandbox_environment(name) as sb, dev_server(interceptors=[signer]) as env:
        ui = ui_base(env, None)
        prom = sb.config.prometheus
        if prom.url and prom.slis:
            from sandbox.prometheus_server import wait_for_data

            # the assessment reads the gateway's real numbers, not "no data" from a fresh Prometheus
            if not await wait_for_data(prom.url, prom.slis[0].query):
                say(f"note: Prometheus at {prom.url} has no samples yet; the first SLI readings may say no data",
                    highlight=False)
        else:
            say("SLIs: skipped (no `prometheus` binary; install Debian's prometheus package to read real SLIs)",
                highlight=False)
        async with running_worker(env.client, sb.config, task_queue):
            ctx = DrillContext(client=env.client, sandbox=sb, task_queue=task_queue, ui=ui, say=say, via=via)
            outcome = await drive(ctx)
            postmortem = await _postmortem(ctx, outcome.workflow_id)
            if as_json:
                doc = outcome.report.model_dump(mode="json")
                doc["postmortem"] = postmortem
                if via != "temporal":
                    doc["via"] = via
                    doc["slack_interactions"] = ctx.interactions
                emit(json.dumps(doc, indent=2))
            else:
                out.print()
                print_report(outcome.report, out)
            if postmortem.get("path"):
                say(f"Post-mortem draft: {postmortem['path']}", highlight=False, soft_wrap=True)
            verdict = "[bold green]DRILL PASSED[/]" if outcome.ok else "[bold red]DRILL FAILED[/]"
            if via != "temporal":
                say(f"via {via}: {len(ctx.interactions)} signed Slack interactions sent to /slack/interactions", highlight=False)
                for i in ctx.interactions:
                    say(f"  {i['type']} {i['action']} {i['action_id']} by {i['user']} -> {i['status']}; "
                        f"message shows: {i.get('shown') or '?'}", highlight=False, soft_wrap=True)
            say(f"{verdict}: {outcome.detail}", highlight=False)
            say(f"UI: {ctx.link(outcome.workflow_id)}", highlight=False, soft_wrap=True)
            if keep:
                say(f"--keep: Temporal UI at {ui}, server at {env.client.service_client.config.target_host}; Ctrl-C ends.")
                await asyncio.Event().wait()
    return 0 if outcome.ok else 1
