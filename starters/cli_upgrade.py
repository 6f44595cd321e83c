"""`codeblue upgrade check`: may this build become the deployment's current version?

    codeblue upgrade check [--build-id ID] [--json]

Exit 0: every open run that would move to this build replays on its code. Exit 1: one does
not (named), so this build must not become current. It also names the older builds whose
pinned runs are still open (keep their workers) and each patch's state.
"""

from __future__ import annotations

import json
import os

import typer

from starters.cli_common import err, exit_now, out, run, temporal_client

upgrade_app = typer.Typer(help="Worker Versioning: can a new build roll out?", no_args_is_help=True)


@upgrade_app.command("check")
def upgrade_check(
    build: str | None = typer.Option(None, "--build-id", help="The build to roll out (default: this code's)."),
    as_json: bool = typer.Option(False, "--json", help="The check as JSON."),
) -> None:
    """Replay every open run that would move to this build; list the builds still needed."""
    from starters import upgrade
    from worker.temporal import quiet_core_logs
    from worker.versioning import ENV_DEPLOYMENT

    deployment = os.environ.get(ENV_DEPLOYMENT, "").strip() or None

    async def go() -> upgrade.UpgradeCheck:
        quiet_core_logs()  # the replays fail on purpose when a run does not fit: no WARN per failure
        return await upgrade.check(await temporal_client(), deployment, build)

    res = run(go)
    if as_json:
        print(json.dumps(res.to_json(), indent=2))
    else:
        moving = [r for r in res.runs if r.behavior in upgrade.MOVES]
        out.print(f"build {res.build}: {len(res.runs)} open CodeBlue runs; {len(moving)} would move to it "
                  f"(auto-upgrade or unversioned), {len(moving) - len(res.replay_failures)} replay on this code",
                  highlight=False)
        for wid, why in res.replay_failures.items():
            out.print(f"  does not replay: {wid}: {why}", highlight=False)
        for b, n in sorted(res.pinned_elsewhere().items()):
            out.print(f"keep build {b}'s workers: {n} pinned runs open on it", highlight=False)
        unversioned = sum(r.behavior == "unversioned" for r in res.runs)
        if unversioned:
            out.print(f"{unversioned} runs started by unversioned workers: they move to the current build once one is set",
                      highlight=False)
        for p in res.patches:
            out.print(f"patch {p.patch_id} (since {p.since}): {'needed' if p.needed else 'may be deprecated'}; {p.why}",
                      highlight=False)
        if not res.patches:
            out.print("patches: none in workflows.patches (the 1.0 baseline)", highlight=False)
        verdict = "yes" if res.can_roll_out else "NO: fix the code or keep the current build"
        (out if res.can_roll_out else err).print(f"can roll out {res.build}: {verdict}", highlight=False)
    exit_now(0 if res.can_roll_out else 1)
