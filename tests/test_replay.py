"""Determinism: fresh histories and the committed ones replay without a non-determinism error."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from domain.incident import Resolution
from sandbox.memory_world import World
from starters import service
from tests.workflow_helpers import decide_all, incident, skip, start, worker_for
from worker.temporal import replayer
from workflows.incident_response import IncidentResponseWorkflow

HISTORIES = Path(__file__).parent / "histories"
# name: World(**world), run_scenario(**run)
SCENARIOS: dict[str, dict[str, dict[str, Any]]] = {
    "rollback_resolved": {"world": {}, "run": {"approve": {"rollback"}}},
    "compensated": {"world": {"db_ok": False}, "run": {"approve": {"rollback", "scale", "db-check"}, "force": True}},
    "diagnostics_sla_missed": {"world": {"failing": {"pod_status"}}, "run": {"approve": set(), "sla_miss": True}},
}


async def run_scenario(env, world: World, approve: set[str], force: bool = False, sla_miss: bool = False) -> WorkflowHistory:
    async with worker_for(env, world) as tq:
        h = await start(env, world, incident(), tq)
        if sla_miss:
            await skip(env, 5.5)
            world.failing.clear()
        await decide_all(env, h, approve)
        world.healthy = True
        await service.resolve(env.client, h.id, Resolution(by="alice", summary="done", force=force))
        await h.result()
        return await h.fetch_history()


def committed_history(path: Path) -> WorkflowHistory:
    """A committed history under its real workflow ID (the incident ID in its input): start
    proofs are bound to it, so a replay under another ID would refuse the start."""
    raw = json.loads(path.read_text())
    started = next(e["workflowExecutionStartedEventAttributes"] for e in raw["events"]
                   if "workflowExecutionStartedEventAttributes" in e)
    inp = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    return WorkflowHistory.from_json(inp["incident_id"], raw)


def _replayer() -> Replayer:
    return replayer([IncidentResponseWorkflow])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_fresh_history_replays(skipping_env, name):
    kw = SCENARIOS[name]
    history = await run_scenario(skipping_env, World(**kw["world"]), **kw["run"])
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_committed_history_replays(path: Path):
    history = committed_history(path)
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_histories_are_committed():
    stems = {p.stem for p in HISTORIES.glob("*.json")}
    assert stems >= set(SCENARIOS)  # recorded before commands were signed
    assert stems >= {f"{s}_signed" for s in SCENARIOS}  # with proofs, the verified-commands marker
    assert stems >= {f"{s}_per_run" for s in SCENARIOS}  # and one post-mortem per incident run
