"""`codeblue drill`, added to the product's CLI through the `codeblue.commands` entry point
(starters.plugins): the product never imports the drill world."""

from __future__ import annotations

from typing import Any

import typer

from starters.cli_common import err, exit_now, fail, out, run


def drill_cmd(
    scenario: str | None = typer.Argument(None, help="Sandbox scenario (default bad-deploy; with --chaos: bad-deploy and db-outage)."),
    as_json: bool = typer.Option(False, "--json", help="Print only the report JSON on stdout."),
    keep: bool = typer.Option(False, "--keep", help="Leave the dev server and UI up afterwards (Ctrl-C ends)."),
    chaos: bool = typer.Option(False, "--chaos", help="Fault drill: SIGKILL the worker at every activity boundary and restart the dev server mid-incident; check every side effect happened once."),
    via: str = typer.Option("temporal", "--via", help="How the drill's IC decides: temporal (signed updates) or slack (signed Slack interactions to the API's /slack/interactions; bad-deploy)."),
) -> None:
    """Run the runbook end to end on a sandbox and the embedded dev server."""
    if via not in ("temporal", "slack"):
        fail(f"--via {via}: expected temporal or slack")
    if chaos:
        if keep:
            fail("--keep does not apply to --chaos")
        if via != "temporal":
            fail("--via slack does not apply to --chaos")
        from sandbox.drills.chaos import chaos_drill

        code = run(lambda: chaos_drill([scenario] if scenario else None, as_json=as_json, out=out, err=err))
        exit_now(code if code is not None else 1)
    from sandbox.drills.runner import drill

    code = run(lambda: drill(scenario or "bad-deploy", as_json=as_json, keep=keep, out=out, err=err, via=via))
    exit_now(code if code is not None else 1)


def register(app: Any) -> None:
    app.command("drill")(drill_cmd)
