"""One saga per incident: every executed mitigation, whatever its batch, is undone newest first
on a later failure and on a cancel; an escalation never runs a batch the IC has not finished
deciding. Fake activities, time-skipping server."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from domain.config import CodeBlueConfig, MitigationConfig
from domain.incident import ActionState, Decision, Escalation, TimelineKind
from domain.severity import Severity
from sandbox.memory_world import World, configure_worker
from starters import service
from tests.support.polling import until
from tests.support.workflows import (
    action,
    decide_all,
    entries,
    incident,
    kinds,
    kinds_after,
    proposed,
    settled,
    start,
    worker_for,
)


async def test_escalation_does_not_run_an_action_still_waiting_for_its_second_approval(skipping_env):
    world = World()
    inp = incident("P1")
    configure_worker(inp.incident_id, CodeBlueConfig(mitigation=MitigationConfig(two_person=["rollback"], approvers=["bob"])))
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        await until(h, proposed, "proposals")
        await service.decide(skipping_env.client, h.id, Decision(action_id="rollback", approve=True, by="alice"))
        await service.escalate(skipping_env.client, h.id, Escalation(severity=Severity.P0, by="alice", reason="spreading"))
        rep = await until(h, lambda r: r.severity == Severity.P0
                          and TimelineKind.NOTIFICATION in kinds_after(r, TimelineKind.ESCALATED), "escalation handled")
        assert world.effects == [], world.effects
        assert TimelineKind.EXECUTING not in kinds(rep) and TimelineKind.EXECUTED not in kinds(rep)
        assert {a.id: a.state for a in rep.actions}["rollback"] == ActionState.PROPOSED  # approved 1/2
        # the second person's approval decides it, and it runs
        await service.decide(skipping_env.client, h.id, Decision(action_id="rollback", approve=True, by="bob"))
        rep = await until(h, lambda r: action(r, "rollback").state == ActionState.EXECUTED, "rollback")
        assert len(entries(rep, TimelineKind.EXECUTED)) == 1
        assert world.effects == ["rollback 12->11"]
        await h.terminate()


async def test_a_failure_in_a_later_batch_undoes_the_earlier_batch_too(skipping_env):
    # the scale meets a world that moved: not run, proposed again as scale-2 (a second batch)
    world = World(moved={"scale_deployment": ("ReplicasMoved", {"current_replicas": 4, "approved_replicas": 3})})
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await decide_all(skipping_env, h, {"rollback", "scale"})
        rep = await until(h, lambda r: any(a.id == "scale-2" for a in r.actions), "scale proposed again")
        assert world.effects == ["rollback 12->11"]
        assert {a.id: a.state for a in rep.actions}["scale"] == ActionState.SUPERSEDED
        assert next(a for a in rep.actions if a.id == "scale-2").params["from_replicas"] == 4
        # the second batch fails: the first batch's rollback is undone as well
        world.moved.clear()
        world.broken.add("scale_deployment")
        await service.decide(skipping_env.client, h.id, Decision(action_id="scale-2", approve=True, by="alice"))
        rep = await until(h, lambda r: action(r, "rollback").state == ActionState.COMPENSATED, "compensation")
        assert entries(rep, TimelineKind.COMPENSATION)
        assert world.effects == ["rollback 12->11", "rollback 13->12"]
        states = {a.id: a.state for a in rep.actions}
        assert states["rollback"] == ActionState.COMPENSATED and states["scale-2"] == ActionState.FAILED
        await h.terminate()


async def test_a_cancel_undoes_every_executed_mitigation_newest_first(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await decide_all(skipping_env, h, {"rollback", "scale"})
        rep = await until(h, lambda r: action(r, "scale").state == ActionState.EXECUTED, "mitigations")
        assert len(entries(rep, TimelineKind.EXECUTED)) == 2 and action(rep, "rollback").state == ActionState.EXECUTED
        assert world.effects == ["rollback 12->11", "scale 3->5"]
        assert await settled(h)  # the cancel under test comes between steps, not across an activity
        await h.cancel()
        with pytest.raises(WorkflowFailureError) as e:
            await h.result()
        assert isinstance(e.value.cause, CancelledError)
        assert world.effects == ["rollback 12->11", "scale 3->5", "scale 5->3", "rollback 13->12"]
