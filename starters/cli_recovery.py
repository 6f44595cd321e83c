"""`codeblue redeploy`: complete service recovery (helm upgrade to the last known-good tag)."""

from __future__ import annotations

import os
from typing import Optional

import typer

from domain.config import TemporalSettings
from domain.recovery import RecoveryInput, recovery_workflow_id


def redeploy_cmd(
    incident: str = typer.Option(..., "--incident", help="The incident this recovery belongs to."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Image tag; default: the last known-good tag."),
    commander: Optional[str] = typer.Option(None, "--commander", help="Who approves (default: --by)."),
    by: str = typer.Option(os.environ.get("USER", "oncall"), "--by", help="Who asks for it."),
    release: Optional[str] = typer.Option(None, "--release", help="Default: helm.release from the config."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Default: kubernetes.namespace."),
    chart: Optional[str] = typer.Option(None, "--chart", help="Default: helm.chart."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config (for the UI link)."),
) -> None:
    """Propose `helm upgrade --set image.tag=<last known-good>`; verify; roll back on failure."""
    from starters import cli
    from starters.recovery import start_recovery
    from starters.service import ui_link

    cfg = cli._config(config)
    try:
        inp = RecoveryInput(
            incident_id=incident, requested_by=by, commander=commander, target_tag=tag,
            release=release, namespace=namespace, chart=chart,
        )
    except ValueError as e:
        cli.fail(cli._first_error(e))

    async def go() -> None:
        client = await cli._acting_client("redeploy")
        s = TemporalSettings.from_env()
        h = await start_recovery(client, inp, s.task_queue)
        wid = recovery_workflow_id(incident)
        cli.out.print(h.id)
        cli.out.print(ui_link(cfg.ui.base_url, s.namespace, wid), highlight=False)
        cli.err.print(
            f"the IC approves with: codeblue incident approve {wid} redeploy --by {inp.commander or by}",
            highlight=False, soft_wrap=True,
        )

    cli.run(go)
