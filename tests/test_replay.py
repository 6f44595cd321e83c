"""Determinism: histories of real runs replay without a non-determinism error."""

from __future__ import annotations

from temporalio.worker import Replayer

from domain.incident import Decision, Resolution
from starters import service
from tests.fakes import World
from tests.workflow_helpers import incident, proposed, skip, start, until, worker_for
from worker.temporal import data_converter
from workflows.incident_response import IncidentResponseWorkflow


async def _run(env, world: World, approve: set[str], force: bool = False, sla_miss: bool = False):
    async with worker_for(env, world) as tq:
        h = await start(env, world, incident(), tq)
        if sla_miss:
            await skip(env, 5.5)
            world.failing.clear()
        rep = await until(h, proposed, "proposals")
        for a in rep.actions:
            ok = a.id in approve
            await service.decide(env.client, h.id, Decision(action_id=a.id, approve=ok, by="alice", reason=None if ok else "no"))
        world.healthy = True
        await service.resolve(env.client, h.id, Resolution(by="alice", summary="done", force=force))
        await h.result()
        return await h.fetch_history()


async def test_histories_replay(skipping_env):
    histories = [
        await _run(skipping_env, World(), {"rollback"}),
        await _run(skipping_env, World(db_ok=False), {"rollback", "scale", "db-check"}, force=True),
        await _run(skipping_env, World(failing={"pod_status"}), set(), sla_miss=True),
    ]
    replayer = Replayer(workflows=[IncidentResponseWorkflow], data_converter=data_converter())
    for h in histories:
        result = await replayer.replay_workflow(h, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure
