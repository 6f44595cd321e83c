"""Importing workflows (the CLI, a replayer, the bench worker) must not load the activities'
client libraries (about 90 MiB); a Worker or Replayer reading every module's loader for its
build ID must not load them either (activities.deferred says why that rules out lazy_loader)."""

from __future__ import annotations

import os
import subprocess
import sys

from activities.deferred import deferred
from tests.support.paths import ROOT

HEAVY = ["kubernetes", "psycopg", "urllib3", "httpx", "slack_sdk", "aiohttp", "redis", "boto3", "botocore"]

SCRIPT = f"""
import asyncio, sys
import workflows.incident_response, workflows.high_memory, workflows.db_connections, workflows.redis_cache
import workflows.service_recovery, workflows.database_restore, workflows.post_incident
from tests.support.paths import HISTORIES
from tests.support.histories import RELEASE, committed_history
from worker.temporal import replayer, workflow_runner
from workflows.incident_response import IncidentResponseWorkflow

async def main():
    r = replayer([IncidentResponseWorkflow])
    res = await r.replay_workflow(committed_history(HISTORIES / RELEASE / "IncidentResponseWorkflow-rollback_resolved.json"), raise_on_replay_failure=False)
    assert res.replay_failure is None, res.replay_failure

asyncio.run(main())
print("LOADED=" + ",".join(n for n in {HEAVY!r} if n in sys.modules), flush=True)
import os
os._exit(0)  # the SDK can abort at interpreter exit after a replayer ran (sdk-python #300)
"""


def test_workflows_and_a_replay_load_no_client_library() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = [line for line in out.stdout.splitlines() if line.startswith("LOADED=")]
    assert loaded == ["LOADED="], out.stdout[-2000:]


def test_a_deferred_module_imports_on_first_use() -> None:
    json = deferred("json")
    assert json.dumps([1]) == "[1]"
    assert "imported" in repr(json)


CLI_VIA_API = """
import os, sys
sys.argv = ["codeblue", "incident", "status", "INC-1", "--json"]
exit_now = os._exit

def report_then_exit(code):  # the CLI ends with os._exit: say what it loaded first
    print("LOADED=" + ",".join(n for n in ("temporalio.client", "workflows.incident_response") if n in sys.modules), flush=True)
    exit_now(code)

os._exit = report_then_exit
from starters.cli import main
main()
"""


def test_a_cli_command_through_the_api_loads_no_temporal_client() -> None:
    """Half of a `codeblue` run's start-up: an IC on the API (`CODEBLUE_API_URL`) needs none of it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CODEBLUE_API_URL": "http://127.0.0.1:9", "CODEBLUE_TOKEN": "tok-x"}
    out = subprocess.run([sys.executable, "-c", CLI_VIA_API], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "cannot reach the CodeBlue API" in out.stderr, out.stderr[-2000:]
    assert [line for line in out.stdout.splitlines() if line.startswith("LOADED=")] == ["LOADED="], out.stdout[-2000:]
