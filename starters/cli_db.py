"""`codeblue db restore|status|cancel|check`: database recovery from the command line."""

from __future__ import annotations

import asyncio
import time

import typer

from domain.config import TemporalSettings
from starters import cli_common as cli

db_app = typer.Typer(help="Database recovery: restore from an RDS snapshot, check the connection.", no_args_is_help=True)


@db_app.command("restore")
def db_restore(
    incident: str = typer.Option(..., "--incident", help="The incident this restore belongs to."),
    snapshot: str | None = typer.Option(None, "--snapshot", help="Snapshot ID or 'latest'; default: aws.rds_snapshot."),
    target: str | None = typer.Option(None, "--target", help="New instance ID; default: <source>-restored."),
    source: str | None = typer.Option(None, "--source", help="Default: aws.rds_instance."),
    commander: str | None = typer.Option(None, "--commander", help="The IC, only if no CodeBlue incident has this ID."),
    by: str | None = typer.Option(None, "--by", help="Who asks: the API token's name (checked), or with the operator key your name (default $USER)."),
    detach: bool = typer.Option(False, "--detach", help="Start it and return; no progress line."),
    config: str | None = typer.Option(None, "--config", "-c", help="YAML config (for the UI link)."),
) -> None:
    """Start the restore; then show a live progress line (elapsed, RDS status, what it waits for)."""
    from domain.database_restore import DatabaseRestoreInput
    from starters import database_restore
    from starters.render import print_report
    from starters.service import ui_link

    make = lambda who: DatabaseRestoreInput(incident_id=incident, source=source, snapshot=snapshot,  # noqa: E731 - one call site
                                            target=target, requested_by=who, commander=commander)
    if cli.api_client() is not None or detach:
        cli.start_procedure_cmd("db-restore", config, make, database_restore.start_restore,
                                lambda wid: f"follow it with: codeblue incident status {wid}", by)
        cli.exit_now(0)
        return
    cfg = cli.cli_config(config)
    who = cli.operator(by)
    try:
        inp = make(who)
    except ValueError as e:
        cli.fail(cli.first_error(e))

    async def go() -> int:
        client = await cli.acting_client("db restore")
        s = TemporalSettings.from_env()
        h = await database_restore.start_restore(client, inp, s.task_queue)
        cli.out.print(h.id)
        cli.out.print(ui_link(cfg.ui.base_url, s.namespace, h.id), highlight=False)
        rep = await _follow(client, incident, h)
        cli.err.print()
        print_report(rep, cli.out)
        return 0 if rep.status == "restored" and rep.verified else 1

    cli.exit_now(cli.run(go) or 0)


async def _follow(client, incident: str, handle):
    """One line on stderr, rewritten in place, until the workflow ends."""
    from starters import database_restore

    t0 = time.monotonic()
    done = asyncio.ensure_future(handle.result())
    try:
        while not done.done():
            rep = await database_restore.restore_status(client, incident)
            pending = [a.id for a in rep.actions if a.state.value == "proposed"]
            if pending:
                what = f"waiting for the IC: codeblue incident approve {handle.id} {pending[0]} --by {rep.commander}"
            else:
                prog = await database_restore.rds_progress(client, incident)
                what = f"RDS status {prog['rds_status'] or '?'}" if prog["attempt"] else (rep.timeline[-1].event if rep.timeline else "")
            elapsed = int(time.monotonic() - t0)
            cli.err.print(f"\r[{elapsed // 60}:{elapsed % 60:02d}] {what}"[:160].ljust(100), end="", highlight=False, soft_wrap=True)
            await asyncio.wait([done], timeout=2)
        return done.result()
    finally:
        done.cancel()


@db_app.command("status")
def db_status(incident: str = typer.Option(..., "--incident"), as_json: bool = typer.Option(False, "--json")) -> None:
    """The restore's report: gates, steps, timings, endpoint, verification."""
    from starters import database_restore
    from starters.render import print_report

    async def go() -> None:
        rep = await database_restore.restore_status(await cli.temporal_client(), incident)
        if as_json:
            print(rep.model_dump_json(indent=2))
        else:
            print_report(rep, cli.out)

    cli.run(go)


@db_app.command("cancel")
def db_cancel(incident: str = typer.Option(..., "--incident"), by: str | None = typer.Option(None, "--by"),
              reason: str = typer.Option(..., "--reason")) -> None:
    """Stop a restore before its cutover (the IC); a restored instance is kept for forensics."""
    from domain.database_restore import CancelRestore
    from starters import database_restore

    cli.command_cmd(
        "db cancel",
        lambda api, _: api.command(f"/incidents/{incident}/db-restore/cancel", {"reason": reason}),
        lambda c, who: database_restore.cancel_restore(c, incident, CancelRestore(by=who, reason=reason)), by)


@db_app.command("check")
def db_check(config: str | None = typer.Option(None, "--config", "-c", help="YAML config.")) -> None:
    """The runbook's `npm run db:check`: connect with the database Secret (or run the configured command)."""

    cfg = cli.cli_config(config)

    async def go() -> int:
        from temporalio.exceptions import ApplicationError

        from activities.kubernetes import KubernetesActivities
        from domain.cluster import DbCheckRequest
        from starters.errors import CodeBlueError
        from worker.main import kube_api_client

        d, k = cfg.database, cfg.kubernetes
        api = kube_api_client(k)
        try:
            res = await KubernetesActivities(api, request_timeout_seconds=k.request_timeout_seconds).db_check(DbCheckRequest(
                namespace=k.namespace, deployment=k.gateway_deployment, secret_name=d.secret_name, secret_key=d.secret_key,
                command=d.check_command, connect_timeout_seconds=d.connect_timeout_seconds))
        except ApplicationError as e:
            raise CodeBlueError(f"db check: {e.message}") from None
        finally:
            api.close()
        (cli.out if res.ok else cli.err).print(("ok: " if res.ok else "FAILED: ") + res.detail, highlight=False, soft_wrap=True)
        return 0 if res.ok else 1

    cli.exit_now(cli.run(go) or 0)
