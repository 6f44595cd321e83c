"""`codeblue playbook ...`: the runbook's "Common Issues" playbooks."""

from __future__ import annotations

import os
from typing import Optional

import typer

from domain.cache import CacheInput, FlushConfirmation, cache_workflow_id
from domain.config import TemporalSettings

playbook_app = typer.Typer(help="Common-issue playbooks (Redis cache, high memory, database connections).", no_args_is_help=True)


@playbook_app.command("cache")
def cache_cmd(
    incident: str = typer.Option(..., "--incident", help="The incident this playbook belongs to."),
    pattern: Optional[str] = typer.Option(None, "--pattern", help="Also offer a flush of only these keys, e.g. 'session:*'."),
    commander: Optional[str] = typer.Option(None, "--commander", help="Who approves (default: --by)."),
    by: str = typer.Option(os.environ.get("USER", "oncall"), "--by"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config (for the UI link)."),
) -> None:
    """Describe the ElastiCache cluster, PING/INFO its Redis, propose guarded flushes."""
    from starters import cli
    from starters.cache import start_cache_playbook
    from starters.service import ui_link

    cfg = cli._config(config)
    try:
        inp = CacheInput(incident_id=incident, requested_by=by, commander=commander, pattern=pattern)
    except ValueError as e:
        cli.fail(cli._first_error(e))

    async def go() -> None:
        client = await cli._client()
        s = TemporalSettings.from_env()
        h = await start_cache_playbook(client, inp, s.task_queue)
        cli.out.print(h.id)
        cli.out.print(ui_link(cfg.ui.base_url, s.namespace, h.id), highlight=False)
        cli.err.print(
            f"decide with: codeblue incident approve {h.id} flushall --by IC; a FLUSHALL also needs: "
            f"codeblue playbook confirm-flush {h.id} --cluster <cluster name> --by IC",
            highlight=False, soft_wrap=True,
        )

    cli.run(go)


@playbook_app.command("confirm-flush")
def confirm_flush_cmd(
    workflow_id: str = typer.Argument(..., help=f"The playbook's ID, e.g. {cache_workflow_id('INC-1')}."),
    cluster: str = typer.Option(..., "--cluster", help="The ElastiCache cluster's name, typed out."),
    by: str = typer.Option(..., "--by"),
) -> None:
    """Confirm an approved FLUSHALL by typing the cluster's name."""
    from starters import cli
    from starters.cache import confirm_flush

    async def go() -> None:
        cli.out.print(await confirm_flush(await cli._client(), workflow_id, FlushConfirmation(by=by, cluster_name=cluster)))

    cli.run(go)


@playbook_app.command("memory")
def memory_cmd(
    incident: str = typer.Option(..., "--incident", help="The incident this playbook belongs to."),
    deployment: Optional[str] = typer.Option(None, "--deployment", help="Default: kubernetes.gateway_deployment."),
    commander: Optional[str] = typer.Option(None, "--commander", help="Who approves (default: --by)."),
    by: str = typer.Option(os.environ.get("USER", "oncall"), "--by"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config (for the UI link)."),
) -> None:
    """Sample pod memory minutes apart, name leak suspects, propose scale to 10 and restart."""
    from domain.memory import MemoryInput
    from starters import cli
    from starters.memory import start_memory_playbook
    from starters.service import ui_link

    cfg = cli._config(config)
    try:
        inp = MemoryInput(incident_id=incident, requested_by=by, commander=commander, deployment=deployment)
    except ValueError as e:
        cli.fail(cli._first_error(e))

    async def go() -> None:
        s = TemporalSettings.from_env()
        h = await start_memory_playbook(await cli._client(), inp, s.task_queue)
        cli.out.print(h.id)
        cli.out.print(ui_link(cfg.ui.base_url, s.namespace, h.id), highlight=False)
        cli.err.print(f"resolve with: codeblue playbook resolve-memory {h.id} --by IC [--keep-scale]",
                      highlight=False, soft_wrap=True)

    cli.run(go)


@playbook_app.command("resolve-memory")
def resolve_memory_cmd(
    workflow_id: str = typer.Argument(..., help="The playbook's ID (<incident>-memory)."),
    by: str = typer.Option(..., "--by"),
    keep_scale: bool = typer.Option(False, "--keep-scale", help="Keep the scaled-up replicas."),
) -> None:
    """End the memory playbook: scale back to the previous replica count unless --keep-scale."""
    from domain.memory import MemoryResolution
    from starters import cli
    from starters.memory import resolve_memory

    async def go() -> None:
        cli.out.print(await resolve_memory(await cli._client(), workflow_id, MemoryResolution(by=by, keep_scale=keep_scale)))

    cli.run(go)


@playbook_app.command("db-connections")
def db_connections_cmd(
    incident: str = typer.Option(..., "--incident", help="The incident this playbook belongs to."),
    commander: Optional[str] = typer.Option(None, "--commander", help="Who approves (default: --by)."),
    max_connection_errors: int = typer.Option(0, "--max-connection-errors", min=0,
                                              help="Connection lines tolerated in the gateway's logs after the restart."),
    by: str = typer.Option(os.environ.get("USER", "oncall"), "--by"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config (for the UI link)."),
) -> None:
    """RDS status, pool evidence in the gateway logs, reachability; propose a restart (or a restore)."""
    from domain.database import restore_workflow_id
    from domain.db_connections import DbConnectionsInput
    from starters import cli
    from starters.db_connections import start_db_connections
    from starters.service import ui_link

    cfg = cli._config(config)
    try:
        inp = DbConnectionsInput(incident_id=incident, requested_by=by, commander=commander,
                                 max_connection_errors=max_connection_errors)
    except ValueError as e:
        cli.fail(cli._first_error(e))

    async def go() -> None:
        s = TemporalSettings.from_env()
        h = await start_db_connections(await cli._client(), inp, s.task_queue)
        cli.out.print(h.id)
        cli.out.print(ui_link(cfg.ui.base_url, s.namespace, h.id), highlight=False)
        cli.err.print(
            f"decide with: codeblue incident approve {h.id} restart --by IC (if the instance is down: "
            f"approve {h.id} restore, then the gates of {restore_workflow_id(incident)})",
            highlight=False, soft_wrap=True,
        )

    cli.run(go)
