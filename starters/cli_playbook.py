"""`codeblue playbook ...`: the runbook's "Common Issues" playbooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import typer

from domain.redis_cache import CacheInput, FlushConfirmation, cache_workflow_id
from starters import cli_common as cli

playbook_app = typer.Typer(help="Common-issue playbooks (Redis cache, high memory, database connections).", no_args_is_help=True)

# The options every playbook start takes.
IncidentOpt = typer.Option(..., "--incident", help="The incident this playbook belongs to.")
CommanderOpt = typer.Option(None, "--commander", help="Who approves (default: --by).")
ByOpt = typer.Option(None, "--by", help="Who asks: the API token's name (checked), or with the operator key your name (default $USER).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (for the UI link).")


def _start_playbook(
    kind: str,
    config: str | None,
    make_input: Callable[[str], Any],
    start: Callable[[Any, Any, str], Awaitable[Any]],
    next_step: Callable[[str], str],
    by: str | None,
) -> None:
    """Every playbook starts alike: the ID and the UI link on stdout, the IC's next step on
    stderr; a bad input or an unreachable Temporal is one line on stderr and exit 1."""

    cli.start_procedure_cmd(kind, config, make_input, start, next_step, by)


@playbook_app.command("cache")
def cache_cmd(
    incident: str = IncidentOpt,
    pattern: str | None = typer.Option(None, "--pattern", help="Also offer a flush of only these keys, e.g. 'session:*'."),
    commander: str | None = CommanderOpt,
    by: str | None = ByOpt,
    config: str | None = ConfigOpt,
) -> None:
    """Describe the ElastiCache cluster, PING/INFO its Redis, propose guarded flushes."""
    from starters.redis_cache import start_cache_playbook

    _start_playbook(
        "cache", config,
        lambda who: CacheInput(incident_id=incident, requested_by=who, commander=commander, pattern=pattern),
        start_cache_playbook,
        lambda wid: (
            f"decide with: codeblue incident approve {wid} flushall --by IC; a FLUSHALL also needs: "
            f"codeblue playbook confirm-flush {wid} --cluster <cluster name> --by IC"
        ),
        by,
    )


@playbook_app.command("confirm-flush")
def confirm_flush_cmd(
    workflow_id: str = typer.Argument(..., help=f"The playbook's ID, e.g. {cache_workflow_id('INC-1')}."),
    cluster: str = typer.Option(..., "--cluster", help="The ElastiCache cluster's name, typed out."),
    by: str | None = ByOpt,
) -> None:
    """Confirm an approved FLUSHALL by typing the cluster's name."""
    from starters.redis_cache import confirm_flush

    cli.command_cmd(
        "playbook confirm-flush",
        lambda api, _: api.command(f"/procedures/{workflow_id}/confirm-flush", {"cluster_name": cluster}),
        lambda c, who: confirm_flush(c, workflow_id, FlushConfirmation(by=who, cluster_name=cluster)), by)


@playbook_app.command("memory")
def memory_cmd(
    incident: str = IncidentOpt,
    deployment: str | None = typer.Option(None, "--deployment", help="Default: kubernetes.gateway_deployment."),
    commander: str | None = CommanderOpt,
    by: str | None = ByOpt,
    config: str | None = ConfigOpt,
) -> None:
    """Sample pod memory minutes apart, name leak suspects, propose scale to 10 and restart."""
    from domain.high_memory import MemoryInput
    from starters.high_memory import start_memory_playbook

    _start_playbook(
        "memory", config,
        lambda who: MemoryInput(incident_id=incident, requested_by=who, commander=commander, deployment=deployment),
        start_memory_playbook,
        lambda wid: f"resolve with: codeblue playbook resolve-memory {wid} --by IC [--keep-scale]",
        by,
    )


@playbook_app.command("resolve-memory")
def resolve_memory_cmd(
    workflow_id: str = typer.Argument(..., help="The playbook's ID (<incident>-memory)."),
    by: str | None = ByOpt,
    keep_scale: bool = typer.Option(False, "--keep-scale", help="Keep the scaled-up replicas."),
) -> None:
    """End the memory playbook: scale back to the previous replica count unless --keep-scale."""
    from domain.high_memory import MemoryResolution
    from starters.high_memory import resolve_memory

    cli.command_cmd(
        "playbook resolve-memory",
        lambda api, _: api.command(f"/procedures/{workflow_id}/resolve-memory", {"keep_scale": keep_scale}),
        lambda c, who: resolve_memory(c, workflow_id, MemoryResolution(by=who, keep_scale=keep_scale)), by)


@playbook_app.command("db-connections")
def db_connections_cmd(
    incident: str = IncidentOpt,
    commander: str | None = CommanderOpt,
    max_connection_errors: int = typer.Option(0, "--max-connection-errors", min=0,
                                              help="Connection lines tolerated in the gateway's logs after the restart."),
    by: str | None = ByOpt,
    config: str | None = ConfigOpt,
) -> None:
    """RDS status, pool evidence in the gateway logs, reachability; propose a restart (or a restore)."""
    from domain.database_restore import restore_workflow_id
    from domain.db_connections import DbConnectionsInput
    from starters.db_connections import start_db_connections

    _start_playbook(
        "db-connections", config,
        lambda who: DbConnectionsInput(incident_id=incident, requested_by=who, commander=commander,
                                       max_connection_errors=max_connection_errors),
        start_db_connections,
        lambda wid: (
            f"decide with: codeblue incident approve {wid} restart --by IC (if the instance is down: "
            f"approve {wid} restore, then the gates of {restore_workflow_id(incident)})"
        ),
        by,
    )
