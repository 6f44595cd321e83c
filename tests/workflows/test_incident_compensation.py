"""A failed mitigation step undoes the earlier ones, newest first."""

from __future__ import annotations

from domain.incident import ActionState, Resolution, TimelineKind
from sandbox.memory_world import World
from starters import service
from tests.support.polling import until
from tests.support.workflows import action, decide_all, incident, kinds, start, worker_for


async def test_failed_later_step_compensates_in_reverse(skipping_env):
    world = World(db_ok=False)  # the last step (db check) fails
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await decide_all(skipping_env, h, {"rollback", "scale", "db-check"})
        rep = await until(h, lambda r: action(r, "rollback").state == ActionState.COMPENSATED, "compensations")
        steps = (TimelineKind.EXECUTED, TimelineKind.FAILED, TimelineKind.COMPENSATION)
        # two ran, the third failed, then the undo: its start and one entry per compensation
        # (newest first: see world.effects below)
        assert [k for k in kinds(rep) if k in steps] == [
            TimelineKind.EXECUTED, TimelineKind.EXECUTED, TimelineKind.FAILED,
            TimelineKind.COMPENSATION, TimelineKind.COMPENSATION, TimelineKind.COMPENSATION,
        ]
        states = {a.id: a.state.value for a in rep.actions}
        assert states == {
            "rollback": "compensated", "scale": "compensated", "restart": "rejected", "db-check": "failed",
            "db-connections-playbook": "rejected",
        }
        assert world.effects == ["rollback 12->11", "scale 3->5", "scale 5->3", "rollback 13->12"]
        # the manager's page follows the compensations (its own activity): wait for it, then exactly one
        await until(lambda: world.pages_to("engineering_manager"), what="the manager's page", timeout=10)
        assert [p.dedup_key.split(":")[-1] for p in world.pages_to("engineering_manager")] == ["mitigation-failed"]
        await service.resolve(skipping_env.client, h.id, Resolution(by="alice", summary="gave up", force=True))
        await h.result()
