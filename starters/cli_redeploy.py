"""`codeblue redeploy`: complete service recovery (helm upgrade to the last known-good tag)."""

from __future__ import annotations

import typer

from domain.service_recovery import RecoveryInput
from starters import cli_common as cli


def redeploy_cmd(
    incident: str = typer.Option(..., "--incident", help="The incident this recovery belongs to."),
    tag: str | None = typer.Option(None, "--tag", help="Image tag; default: the last known-good tag."),
    commander: str | None = typer.Option(None, "--commander", help="The IC, only if no CodeBlue incident has this ID (default: you)."),
    by: str | None = typer.Option(None, "--by", help="Who asks: the API token's name (checked), or with the operator key your name (default $USER)."),
    release: str | None = typer.Option(None, "--release", help="Default: helm.release from the config."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: kubernetes.namespace."),
    chart: str | None = typer.Option(None, "--chart", help="Default: helm.chart."),
    config: str | None = typer.Option(None, "--config", "-c", help="YAML config (for the UI link)."),
) -> None:
    """Propose `helm upgrade --set image.tag=<last known-good>`; verify; roll back on failure."""
    from starters.service_recovery import start_recovery

    cli.start_procedure_cmd(
        "redeploy", config,
        lambda who: RecoveryInput(incident_id=incident, requested_by=who, commander=commander, target_tag=tag,
                                  release=release, namespace=namespace, chart=chart),
        start_recovery,
        lambda wid: f"the IC approves with: codeblue incident approve {wid} redeploy",
        by,
    )
