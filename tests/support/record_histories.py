"""Records a release's histories: `python -m tests.support.record_histories` (README, "Upgrades").

Writes `tests/histories/<release>/`, one file per recorded run, `<WorkflowType>-<scenario>.json`
(the history's events and its workflow ID): every workflow type CodeBlue registers, from

- the incident scenarios of `tests.support.histories.SCENARIOS` on the time-skipping server (a
  rollback, a failed batch compensated, a missed SLA), and
- every drill scenario (`sandbox.scenarios`) on the embedded dev server with the sandbox world:
  the incident, its playbook child, the restore, the redeploy and the post-incident runs.

Run it once per release, with the code of that release; the suite replays every release's
folder that the upgrade policy still keeps (`tests/workflows/test_replay.py`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.identity import ENV_KEY, keyring_from_env
from sandbox.memory_world import World
from tests.support.histories import RELEASE, SCENARIOS, run_scenario
from tests.support.identity import signing_interceptors, use_test_keys
from tests.support.paths import HISTORIES
from worker.identity import IdentityInterceptor
from worker.temporal import data_converter, register_search_attributes
from workflows.registry import WORKFLOWS

use_test_keys()  # the suite's operator key: the suite replays these histories with it


def write(folder: Path, workflow_type: str, scenario: str, workflow_id: str, history: dict) -> None:
    path = folder / f"{workflow_type}-{scenario}.json"
    path.write_text(json.dumps({"workflowId": workflow_id, **history}, indent=1) + "\n")
    print("wrote", path, flush=True)


async def record_memory_scenarios(folder: Path) -> None:
    for name, kwargs in SCENARIOS.items():
        # a server per scenario, as in the tests: one scenario's skipped clock never wedges the next
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=data_converter(), interceptors=signing_interceptors(),
            test_server_existing_path=shutil.which("temporal-test-server"),
        )
        try:
            await register_search_attributes(env.client)
            history = await run_scenario(env, World(**kwargs["world"]), **kwargs["run"])
            write(folder, "IncidentResponseWorkflow", name, history.workflow_id, history.to_json_dict())
        finally:
            await env.shutdown()


async def every_history(client: Client) -> list[tuple[str, str, dict]]:
    out = []
    async for wf in client.list_workflows():
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        out.append((wf.workflow_type, wf.id, history.to_json_dict()))
    return out


async def record_drill(folder: Path, name: str) -> None:
    """One drill scenario as `codeblue drill` runs it; then every run on its dev server."""
    from rich.console import Console

    from sandbox.drills.kit import DrillContext
    from sandbox.drills.runner import DRIVERS
    from sandbox.scenarios import sandbox_environment, scenario
    from starters.devserver import dev_server, ui_base
    from worker.main import running_worker

    sc = scenario(name)
    err = Console(stderr=True)
    task_queue = f"codeblue-record-{uuid.uuid4().hex[:6]}"
    signer = IdentityInterceptor(keyring_from_env(), via="", roles=["commander", "admin"])
    async with sandbox_environment(name) as sb, dev_server(interceptors=[signer]) as env:
        async with running_worker(env.client, sb.config, task_queue):
            ctx = DrillContext(client=env.client, sandbox=sb, task_queue=task_queue, ui=ui_base(env, None),
                               say=err.print)
            outcome = await DRIVERS[sc.driver](ctx)
            if not outcome.ok:
                raise SystemExit(f"drill {name} failed: {outcome.detail}")
            await asyncio.sleep(1)  # the children's last tasks
            for workflow_type, wid, history in await every_history(env.client):
                write(folder, workflow_type, name.replace("-", "_"), wid, history)


async def main(only: list[str]) -> None:
    folder = HISTORIES / RELEASE
    folder.mkdir(parents=True, exist_ok=True)
    if not only or "incident" in only:
        await record_memory_scenarios(folder)
    from sandbox.scenarios import SCENARIOS as DRILLS

    for name in DRILLS:
        if not only or name in only:
            await record_drill(folder, name)
    missing = {w.__name__ for w in WORKFLOWS} - {p.name.split("-")[0] for p in folder.glob("*.json")}
    if missing:
        raise SystemExit(f"no history recorded for {', '.join(sorted(missing))}")


if __name__ == "__main__":
    assert os.environ.get(ENV_KEY)  # the tests' key (use_test_keys): the suite replays with it
    asyncio.run(main(sys.argv[1:]))
    os._exit(0)  # the SDK can abort at interpreter exit after a worker ran (sdk-python #300)
