"""`codeblue drill`: a scenario's world on the sandbox, a worker, and the IC's moves.

Each scenario (sandbox.scenarios) names a driver; DRIVERS below maps the name to its module's
driver function, which returns a `DrillOutcome` (parts in sandbox/drills/kit.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from domain.identity import ENV_KEY, keyring_from_env, new_key
from sandbox.drills import (
    database_restore,
    db_connections,
    high_memory,
    incident,
    redis_cache,
    service_recovery,
    shared_database,
    two_incidents,
)
from sandbox.drills.kit import DrillContext, Driver, json_stdout
from starters.devserver import dev_server, ui_base
from starters.render import print_report
from starters.service import CodeBlueError
from worker.heap import settle_heap
from worker.identity import IdentityInterceptor
from worker.main import running_worker

# Every drill driver, by the name a scenario gives (sandbox.scenarios.Scenario.driver).
DRIVERS: dict[str, Driver] = {
    "incident": incident.drive_incident,
    "db-restore": database_restore.drive_db_restore,
    "db-connections": db_connections.drive_db_connections,
    "failed-redeploy": service_recovery.drive_failed_redeploy,
    "cache-poisoned": redis_cache.drive_cache_poisoned,
    "memory-leak": high_memory.drive_memory_leak,
    "two-incidents": two_incidents.drive_two_incidents,
    "shared-db": shared_database.drive_shared_database,
}


async def _postmortem(ctx: DrillContext, workflow_id: str) -> dict:
    """The incident's post-mortem draft, written where the engineer can open it."""
    from starters.post_incident import draft

    try:
        text = await draft(ctx.client, workflow_id)
    except Exception as e:  # noqa: BLE001 - a drill without a draft still reports
        return {"path": None, "text": None, "error": str(e).splitlines()[0] if str(e) else type(e).__name__}
    folder = Path(".codeblue") / "postmortems"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{workflow_id}.md"
    path.write_text(text)
    return {"path": str(path.resolve()), "text": text}


VIAS = ("temporal", "slack")


async def drill(name: str, *, as_json: bool, keep: bool, out: Console, err: Console, via: str = "temporal") -> int:
    with json_stdout(as_json) as emit:
        return await _drill(name, as_json=as_json, keep=keep, out=out, err=err, emit=emit, via=via)


async def _drill(name: str, *, as_json: bool, keep: bool, out: Console, err: Console,
                 emit: Callable[[str], None], via: str = "temporal") -> int:
    from sandbox.scenarios import sandbox_environment, scenario

    try:
        sc = scenario(name)
    except ValueError as e:
        raise CodeBlueError(str(e)) from None
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
    # operator key of its own (worker.identity), made for this run unless one is set; as an
    # admin, since a playbook drill starts its procedure with no incident opened first.
    os.environ.setdefault(ENV_KEY, new_key())
    signer = IdentityInterceptor(keyring_from_env(), via="", roles=["commander", "admin"])
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
            settle_heap()  # the world is up: what it took to start stays, out of the collector's sight
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
