"""Determinism: fresh histories and every kept release's committed ones replay on this code.

`tests/histories/<release>/` holds the runs recorded with that release (`python -m
tests.support.record_histories`); the README's upgrade policy says which releases stay here."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.worker import Replayer

from sandbox.memory_world import World
from tests.support.histories import RELEASE, SCENARIOS, committed_history, run_scenario
from tests.support.paths import HISTORIES
from worker.temporal import replayer
from workflows.registry import WORKFLOWS


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
