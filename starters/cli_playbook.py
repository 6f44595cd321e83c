"""`codeblue playbook ...`: the runbook's "Common Issues" playbooks."""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable, Optional

import typer

from domain.cache import CacheInput, FlushConfirmation, cache_workflow_id
from domain.config import TemporalSettings

playbook_app = typer.Typer(help="Common-issue playbooks (Redis cache, high memory, database connections).", no_args_is_help=True)

# The options every playbook start takes.
IncidentOpt = typer.Option(..., "--incident", help="The incident this playbook belongs to.")
CommanderOpt = typer.Option(None, "--commander", help="Who approves (default: --by).")
ByOpt = typer.Option(os.environ.get("USER", "oncall"), "--by")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (for the UI link).")


def _start_playbook(
    config: Optional[str],
    make_input: Callable[[], Any],
    start: Callable[[Any, Any, str], Awaitable[Any]],
    next_step: Callable[[str], str],
) -> None:
    """Every playbook starts alike: the ID and the UI link on stdout, the IC's next step on
    stderr; a bad input or an unreachable Temporal is one line on stderr and exit 1."""
    from starters import cli
    from starters.service import ui_link

    cfg = cli._config(config)
    try:
        inp = make_input()
    except ValueError as e:
        cli.fail(cli._first_error(e))

    async def go() -> None:
        client = await cli._acting_client("playbook")
        s = TemporalSettings.from_env()
        h = await start(client, inp, s.task_queue)
        cli.out.print(h.id)
        cli.out.print(ui_link(cfg.ui.base_url, s.namespace, h.id), highlight=False)
        cli.err.print(next_step(h.id), highlight=False, soft_wrap=True)

    cli.run(go)


@playbook_app.command("cache")
def cache_cmd(
    incident: str = IncidentOpt,
    pattern: Optional[str] = typer.Option(None, "--pattern", help="Also offer a flush of only these keys, e.g. 'session:*'."),
    commander: Optional[str] = CommanderOpt,
    by: str = ByOpt,
    config: Optional[str] = ConfigOpt,
) -> None:
    """Describe the ElastiCache cluster, PING/INFO its Redis, propose guarded flushes."""
    from starters.cache import start_cache_playbook

    _start_playbook(
        config,
        lambda: CacheInput(incident_id=incident, requested_by=by, commander=commander, pattern=pattern),
        start_cache_playbook,
        lambda wid: (
            f"decide with: codeblue incident approve {wid} flushall --by IC; a FLUSHALL also needs: "
            f"codeblue playbook confirm-flush {wid} --cluster <cluster name> --by IC"
        ),
    )


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
        cli.out.print(await confirm_flush(await cli._acting_client("playbook confirm-flush"), workflow_id, FlushConfirmation(by=by, cluster_name=cluster)))

    cli.run(go)


@playbook_app.command("memory")
def memory_cmd(
    incident: str = IncidentOpt,
    deployment: Optional[str] = typer.Option(None, "--deployment", help="Default: kubernetes.gateway_deployment."),
    commander: Optional[str] = CommanderOpt,
    by: str = ByOpt,
    config: Optional[str] = ConfigOpt,
) -> None:
    """Sample pod memory minutes apart, name leak suspects, propose scale to 10 and restart."""
    from domain.memory import MemoryInput
    from starters.memory import start_memory_playbook

    _start_playbook(
        config,
        lambda: MemoryInput(incident_id=incident, requested_by=by, commander=commander, deployment=deployment),
        start_memory_playbook,
        lambda wid: f"resolve with: codeblue playbook resolve-memory {wid} --by IC [--keep-scale]",
    )


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
        cli.out.print(await resolve_memory(await cli._acting_client("playbook resolve-memory"), workflow_id, MemoryResolution(by=by, keep_scale=keep_scale)))

    cli.run(go)


@playbook_app.command("db-connections")
def db_connections_cmd(
    incident: str = IncidentOpt,
    commander: Optional[str] = CommanderOpt,
    max_connection_errors: int = typer.Option(0, "--max-connection-errors", min=0,
                                              help="Connection lines tolerated in the gateway's logs after the restart."),
    by: str = ByOpt,
    config: Optional[str] = ConfigOpt,
) -> None:
    """RDS status, pool evidence in the gateway logs, reachability; propose a restart (or a restore)."""
    from domain.database import restore_workflow_id
    from domain.db_connections import DbConnectionsInput
    from starters.db_connections import start_db_connections

    _start_playbook(
        config,
        lambda: DbConnectionsInput(incident_id=incident, requested_by=by, commander=commander,
                                   max_connection_errors=max_connection_errors),
        start_db_connections,
        lambda wid: (
            f"decide with: codeblue incident approve {wid} restart --by IC (if the instance is down: "
            f"approve {wid} restore, then the gates of {restore_workflow_id(incident)})"
        ),
    )
