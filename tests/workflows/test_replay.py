"""Determinism: fresh histories and every kept release's committed ones replay on this code.

`tests/histories/<release>/` holds the runs recorded with that release (`python -m
tests.record_histories`); the README's upgrade policy says which releases stay here."""

from __future__ import annotations

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
from workflows.registry import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"
RELEASE = "1.0"  # the folder this code's histories are recorded into
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
    """A committed history under its real workflow ID (start proofs are bound to it, so a
    replay under another ID would refuse the start)."""
    raw = json.loads(path.read_text())
    return WorkflowHistory.from_json(raw.pop("workflowId"), raw)


def committed() -> list[Path]:
    return sorted(HISTORIES.glob("*/*.json"))


def _replayer() -> Replayer:
    return replayer(WORKFLOWS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_fresh_history_replays(skipping_env, name):
    kw = SCENARIOS[name]
    history = await run_scenario(skipping_env, World(**kw["world"]), **kw["run"])
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("path", committed(), ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_committed_history_replays(path: Path):
    history = committed_history(path)
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_every_workflow_type_has_histories_of_this_release():
    recorded = {p.stem.split("-")[0] for p in (HISTORIES / RELEASE).glob("*.json")}
    assert {w.__name__ for w in WORKFLOWS} <= recorded
    assert {f"IncidentResponseWorkflow-{s}" for s in SCENARIOS} <= {p.stem for p in (HISTORIES / RELEASE).glob("*.json")}
