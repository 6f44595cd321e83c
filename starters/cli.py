"""`codeblue`: start and steer incidents, run a worker, the dev server or a drill."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Column, Table

from domain.config import TemporalSettings
from domain.incident import (
    CommanderAssignment,
    Decision,
    Escalation,
    IncidentInput,
    Note,
    Resolution,
)
from domain.severity import Observations, Severity, classify
from starters.cli_api import api_cmd
from starters.cli_common import (
    ByOpt,
    ConfigOpt,
    PublicOpt,
    api_client,
    cli_config,
    command_cmd,
    err,
    exit_now,
    fail,
    first_error,
    operator,
    out,
    run,
    run_sync,
    temporal_client,
)
from starters.cli_db import db_app
from starters.cli_playbook import playbook_app
from starters.cli_postmortem import register as register_postmortem
from starters.cli_redeploy import redeploy_cmd
from starters.cli_upgrade import upgrade_app
from starters.plugins import register_commands
from starters.render import print_report

if TYPE_CHECKING:
    from starters import service as svc
else:  # imported on first use: a command through the API (CODEBLUE_API_URL) never loads the Temporal client
    from activities.deferred import Deferred

    svc = Deferred("starters.service")

app = typer.Typer(
    help="CodeBlue: the incident-response runbook as durable Temporal workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
incident_app = typer.Typer(help="Start and steer incidents.", no_args_is_help=True)
app.add_typer(incident_app, name="incident")

# ------------------------------------------------------------------ incidents
@incident_app.command("start")
def incident_start(
    title: str = typer.Option(..., "--title", help="What is happening, in one line."),
    severity: Severity | None = typer.Option(None, "--severity", help="P0-P3; omit to classify from the flags below."),
    service: str = typer.Option("api-gateway", "--service"),
    commander: str | None = typer.Option(None, "--commander", help="The incident commander (IC)."),
    incident_id: str | None = typer.Option(None, "--id", help="Default: INC-<utc time>-<random>."),
    by: str | None = ByOpt,
    outage: bool = typer.Option(False, "--outage", help="Complete service outage."),
    security: bool = typer.Option(False, "--security", help="Data breach or security incident (pages security)."),
    patient_safety: bool = typer.Option(False, "--patient-safety", help="Patient safety impact."),
    major_feature: bool = typer.Option(False, "--major-feature", help="Major feature unavailable."),
    auth: bool = typer.Option(False, "--auth", help="Authentication issues."),
    degradation: float | None = typer.Option(None, "--degradation", min=0, max=100, help="Performance degradation in %."),
    public_summary: str | None = PublicOpt,
    config: str | None = ConfigOpt,
) -> None:
    """Open an incident: prints its ID and the Temporal UI link."""
    cfg = cli_config(config)
    obs = Observations(
        complete_outage=outage,
        security_incident=security,
        patient_safety_impact=patient_safety,
        major_feature_unavailable=major_feature,
        authentication_issues=auth,
        performance_degradation_pct=degradation,
    )
    api = api_client()
    if api is not None:

        def via_api() -> None:
            api.actor(by)
            body = {"title": title, "severity": severity.value if severity else None, "service": service,
                    "commander": commander, "incident_id": incident_id, "outage": outage, "security": security,
                    "patient_safety": patient_safety, "major_feature": major_feature, "auth": auth,
                    "degradation": degradation, "public_summary": public_summary}
            started = api.start_incident(body)
            out.print(started["incident_id"])
            out.print(started["ui_url"], highlight=False)

        run_sync(via_api)
        return
    by = operator(by)
    cls = classify(obs)
    sev = severity or cls.severity
    reasons = cls.reasons if severity is None or severity == cls.severity else [f"set by {by}"]
    iid = incident_id or f"INC-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    try:
        inp = IncidentInput(
            incident_id=iid, title=title, severity=sev, service=service, commander=commander,
            requested_by=by, security_incident=security, severity_reasons=reasons, public_summary=public_summary,
        )
    except ValueError as e:
        fail(first_error(e))

    async def go() -> None:
        client = await temporal_client()
        s = TemporalSettings.from_env()
        await svc.start_incident(client, inp, s.task_queue)
        out.print(inp.incident_id)
        out.print(svc.ui_link(cfg.ui.base_url, s.namespace, inp.incident_id), highlight=False)

    run(go)


@incident_app.command("watch")
def incident_watch(
    incident_id: str,
    every: float = typer.Option(1.0, "--every", min=0.2, help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Draw one frame and exit (scripts, tests)."),
) -> None:
    """A live view of an incident: phase, SLA clocks counting down, proposals (recommendation
    first), the latest timeline lines. Exits when the incident closes, or on Ctrl-C."""
    from datetime import datetime

    from rich.live import Live

    from starters.render import watch_view

    api = api_client()

    async def go() -> None:
        client = None if api else await temporal_client()

        async def read() -> Any:
            if api:
                return api.status(incident_id)
            assert client is not None  # no API: a Temporal client was made above
            return await svc.status(client, incident_id)

        rep = await read()
        if once:
            out.print(watch_view(rep, datetime.now(UTC)))
            return
        with Live(watch_view(rep, datetime.now(UTC)), console=out, refresh_per_second=4) as live:
            while rep.status == "open":
                await asyncio.sleep(every)
                rep = await read()
                live.update(watch_view(rep, datetime.now(UTC)))
        out.print(f"{incident_id} closed: {rep.status}", highlight=False)

    run(go)


@incident_app.command("status")
def incident_status(incident_id: str, as_json: bool = typer.Option(False, "--json", help="The report JSON.")) -> None:
    """Phase, SLA clocks, proposals and the timeline of an incident."""
    api = api_client()

    async def go() -> None:
        rep = api.status(incident_id) if api else await svc.status(await temporal_client(), incident_id)
        if as_json:
            print(rep.model_dump_json(indent=2))
        else:
            print_report(rep, out)

    run(go)


@incident_app.command("approve")
def incident_approve(
    incident_id: str,
    actions: list[str] | None = typer.Argument(None, help="One or more proposed actions, run in this order."),
    recommended: bool = typer.Option(False, "--recommended", help="Approve the proposal CodeBlue recommends."),
    override: str | None = typer.Option(
        None, "--override", help="Admins only: why these steps may go past the blast-radius policy's hourly rate "
        "or replica ceiling (recorded on the action and the timeline)."),
    by: str | None = ByOpt,
) -> None:
    """Approve proposed actions (only the IC or a configured approver): each runs at once, in
    the order given; several are decided together, all or none."""
    chosen = list(actions or [])
    if recommended:
        best = _recommended(incident_id)
        chosen = [best, *[a for a in chosen if a != best]]
    if not chosen:
        fail("name the action(s) to approve, or --recommended")
    if override is not None and not override.strip():
        fail("--override needs a reason")
    if len(chosen) == 1:
        _decide(incident_id, chosen[0], True, by, None, override)
    else:
        _decide_many(incident_id, chosen, by, override)


def _recommended(incident_id: str) -> str:
    """The incident's recommended proposal, still waiting for a decision."""
    api = api_client()

    async def read() -> Any:
        return api.status(incident_id) if api else await svc.status(await temporal_client(), incident_id)

    rep = run(read)
    best = next((a for a in rep.actions if a.recommended), None)
    if best is None:
        fail(f"{incident_id} has no recommended proposal (yet)")
    if best.state.value != "proposed":
        fail(f"the recommended proposal {best.id} is already {best.state.value}")
    return best.id


def _decide_many(incident_id: str, actions: list[str], by: str | None, override: str | None = None) -> None:
    from domain.incident import BatchDecision, DecisionBatch

    def show(results: list[Any]) -> str:
        return "\n".join(f"{r.action_id}: {r.state.value}" for r in results)

    def via_api(api: Any, _: str) -> str:
        return show(api.decide_many(incident_id, [(a, True, None) for a in actions], override))

    async def direct(client: Any, who: str) -> str:
        batch = DecisionBatch(by=who, decisions=[BatchDecision(action_id=a, approve=True, override=override)
                                                 for a in actions])
        return show(await svc.decide_many(client, incident_id, batch))

    command_cmd("incident approve", via_api, direct, by)


@incident_app.command("reject")
def incident_reject(
    incident_id: str, action: str, by: str | None = ByOpt, reason: str = typer.Option(..., "--reason")
) -> None:
    """Reject a proposed action, with a reason."""
    _decide(incident_id, action, False, by, reason)


def _decide(incident_id: str, action: str, approve: bool, by: str | None, reason: str | None,
            override: str | None = None) -> None:
    def via_api(api: Any, _: str) -> str:
        return _decision_line(incident_id, api.decide(incident_id, action, approve, reason, override))

    async def direct(client: Any, who: str) -> str:
        res = await svc.decide(client, incident_id, Decision(action_id=action, approve=approve, by=who, reason=reason,
                                                             override=override))
        return _decision_line(incident_id, res)

    command_cmd("incident approve" if approve else "incident reject", via_api, direct, by)


def _decision_line(incident_id: str, res: Any) -> str:
    """'rollback: approved', and what happens next: it runs now, or the workflow's word (a
    first approval under the two-person rule, an already withdrawn proposal)."""
    line = f"{res.action_id}: {res.state.value}"
    if res.state.value == "approved":
        return f"{line} — it runs now\nfollow it: codeblue incident watch {incident_id}"
    if res.message and res.message != f"{res.action_id} {res.state.value}":
        return f"{line} — {res.message}"
    return line


@incident_app.command("resolve")
def incident_resolve(
    incident_id: str,
    by: str | None = ByOpt,
    summary: str = typer.Option(..., "--summary"),
    force: bool = typer.Option(False, "--force", help="Close even if health verification fails."),
    public_summary: str | None = PublicOpt,
) -> None:
    """Resolve: CodeBlue verifies health first and refuses while unhealthy (unless --force)."""
    api = api_client()
    try:
        r = Resolution(by=by or "api", summary=summary, force=force, public_summary=public_summary)
    except ValueError as e:
        fail(first_error(e))

    async def go() -> None:
        if api is not None:
            api.actor(by)
            res = api.resolve(incident_id, summary, force, public_summary)
        else:
            res = await svc.resolve(await temporal_client(), incident_id, r.model_copy(update={"by": operator(by)}))
        if not res.resolved:
            fail(res.message)
        out.print(res.message)

    run(go)


@incident_app.command("assign")
def incident_assign(incident_id: str, commander: str = typer.Option(..., "--commander"), by: str | None = ByOpt) -> None:
    """Assign (or hand over) the incident commander role."""
    sent = f"commander assignment sent: {commander}"

    def via_api(api: Any, _: str) -> str:
        api.assign(incident_id, commander)
        return sent

    async def direct(client: Any, who: str) -> str:
        await svc.assign_commander(client, incident_id, CommanderAssignment(commander=commander, by=who))
        return sent

    command_cmd("incident assign", via_api, direct, by)


@incident_app.command("escalate")
def incident_escalate(
    incident_id: str,
    severity: Severity = typer.Option(..., "--severity"),
    by: str | None = ByOpt,
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Raise the severity (e.g. P1 -> P0); pages on-call again."""
    sent = f"escalation sent: {severity.value}"

    def via_api(api: Any, _: str) -> str:
        api.escalate(incident_id, severity.value, reason)
        return sent

    async def direct(client: Any, who: str) -> str:
        await svc.escalate(client, incident_id, Escalation(severity=severity, by=who, reason=reason))
        return sent

    command_cmd("incident escalate", via_api, direct, by)


@incident_app.command("service")
def incident_service(
    incident_id: str,
    service: str = typer.Argument(..., help="The catalog service the incident is about."),
    by: str | None = ByOpt,
) -> None:
    """Name the catalog service of an incident opened for a service the catalog does not know:
    CodeBlue reads that service's targets, its evidence, and proposes for it (IC only)."""
    from domain.incident import ServiceNaming

    try:
        naming = ServiceNaming(service=service, by=by or "api")
    except ValueError as e:
        fail(first_error(e))

    def via_api(api: Any, _: str) -> str:
        return str(api.name_service(incident_id, service)["message"])

    async def direct(client: Any, who: str) -> str:
        return await svc.name_service(client, incident_id, naming.model_copy(update={"by": who}))

    command_cmd("incident service", via_api, direct, by)


@incident_app.command("note")
def incident_note(
    incident_id: str,
    text: str = typer.Argument(..., help="What you saw or did (stays in the encrypted history, never in logs)."),
    by: str | None = ByOpt,
) -> None:
    """Add a note to the incident's timeline."""
    try:
        note = Note(by=by or "api", text=text)
    except ValueError as e:
        fail(first_error(e))

    def via_api(api: Any, _: str) -> str:
        api.note(incident_id, text)
        return "note added"

    async def direct(client: Any, who: str) -> str:
        await svc.add_note(client, incident_id, note.model_copy(update={"by": who}))
        return "note added"

    command_cmd("incident note", via_api, direct, by)


def _short_time(iso: Any) -> str:
    """'2026-12-01T12:30:48+00:00' -> '12-01 12:30' (UTC); anything else as it is."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso)).astimezone(UTC).strftime("%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso or "")


@incident_app.command("list")
def incident_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Open incidents (from Temporal visibility)."""
    api = api_client()

    async def go() -> None:
        rows = api.list_open() if api else await svc.list_open(await temporal_client())
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        if not rows:
            out.print("no open incidents")
            return
        # kubectl-style columns; the ID is what the next command needs: never cut short, whatever
        # the terminal's width (a boxed table cut it to "INC-2026120…" in 80 columns)
        t = Table(Column("incident", no_wrap=True, min_width=max(len(str(r["incident_id"])) for r in rows)),
                  "sev", Column("phase", no_wrap=True), "service", "commander",
                  Column("started (UTC)", no_wrap=True), box=None, pad_edge=False, header_style="bold")
        for r in rows:
            t.add_row(r["incident_id"], r["severity"], r["phase"], r["service"], r["commander"], _short_time(r["started"]))
        out.print(t)

    run(go)


@app.command("login")
def login_cmd(
    api_url: str = typer.Option(..., "--api", help="The CodeBlue API, e.g. https://codeblue.example.org"),
    token: str | None = typer.Option(None, "--token", help="Default: read from stdin (never put it in shell history)."),
) -> None:
    """Check a token against the API and keep it for the CLI (owner-only file, like kubectl)."""
    from starters.api_client import ApiClient, ApiCredentials

    secret = (token or sys.stdin.readline()).strip()
    if not secret:
        fail("no token given (--token, or on stdin)")

    def go() -> None:
        creds = ApiCredentials(api_url.rstrip("/"), secret)
        me = ApiClient(creds).whoami()
        path = creds.save()
        out.print(f"logged in to {creds.url} as {me['name']} ({', '.join(me['roles']) or 'no roles'}); credentials in {path}")

    run_sync(go)


# ------------------------------------------------------------------ processes
@app.command("worker")
def worker_cmd(config: str | None = ConfigOpt) -> None:
    """Run a worker on $TEMPORAL_TASK_QUEUE until SIGINT/SIGTERM."""
    cfg = cli_config(config)  # a bad config is refused before the worker's clients are imported
    from worker.main import serve_until_signal

    async def go() -> None:
        client = await temporal_client()
        s = TemporalSettings.from_env()
        from worker.versioning import deployment_config

        dc = deployment_config()
        build = f"version {dc.version.deployment_name}.{dc.version.build_id}" if dc else "unversioned"
        err.print(f"worker on {s.address} namespace {s.namespace} task queue {s.task_queue} ({build}); Ctrl-C stops",
                  soft_wrap=True, highlight=False)
        await serve_until_signal(client, cfg, s.task_queue)

    run(go)
    exit_now(0)


@app.command("dev")
def dev_cmd(
    sandbox: str | None = typer.Option(None, "--sandbox", help="Act on a drill sandbox scenario (e.g. bad-deploy; needs the drill world); with --config, your config on the sandbox's endpoints."),
    port: int = typer.Option(7233, "--port"),
    ui_port: int = typer.Option(8233, "--ui-port"),
    api_port: int = typer.Option(8000, "--api-port", min=1, max=65535, help="The CodeBlue HTTP API."),
    config: str | None = ConfigOpt,
) -> None:
    """Embedded Temporal dev server (Web UI on), a worker and the HTTP API; writes
    .codeblue/dev.env for a second terminal. With --sandbox and --config: your config with the
    sandbox's endpoints (it prints the keys replaced). Ctrl-C stops all."""
    from starters.devserver import dev

    cfg = cli_config(config)
    source = config or os.environ.get("CODEBLUE_CONFIG") or None  # as load_config reads it
    code = run(lambda: dev(cfg, sandbox, port, ui_port, err, api_port, config_source=source))
    exit_now(code or 0)


def main() -> None:
    gc.disable()  # until the command runs (cli_common.run settles the heap): nothing to collect while it imports
    missing = register_commands(app)  # `codeblue drill` (the drill world, when installed)
    if len(sys.argv) > 1 and sys.argv[1] in missing:
        fail(missing[sys.argv[1]], code=2)
    try:
        app()
    except SystemExit as e:
        exit_now(e.code if isinstance(e.code, int) else (0 if e.code is None else 2))


# top-level shortcuts for the IC's hands: `codeblue approve ID ACTION --by NAME`
app.command("approve", hidden=True)(incident_approve)
app.command("reject", hidden=True)(incident_reject)
app.command("resolve", hidden=True)(incident_resolve)
app.command("status", hidden=True)(incident_status)

# the procedures' own commands, each in its module
app.command("api")(api_cmd)  # the HTTP API (cli_api.py)
app.command("redeploy")(redeploy_cmd)  # complete service recovery (cli_redeploy.py)
register_postmortem(app)  # `postmortem` and `action-item` (cli_postmortem.py)
app.add_typer(db_app, name="db")  # database recovery (cli_db.py)
app.add_typer(upgrade_app, name="upgrade")  # `upgrade check` (cli_upgrade.py)
app.add_typer(playbook_app, name="playbook")  # `playbook cache|confirm-flush` (cli_playbook.py)
