"""Who may decide: playbooks take their incident's IC, the two-person rule, and what the
public and the history may read."""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.worker import Worker

from activities.environment import EnvironmentActivities
from domain.config import CodeBlueConfig, MitigationConfig, NotificationConfig
from domain.identity import Principal
from domain.incident import ActionState, Decision, Resolution, TimelineKind
from sandbox.memory_world import PostWorld, World
from starters import service
from tests.support.db_fakes import DbWorld
from tests.support.histories import history_text
from tests.support.polling import until
from tests.support.restore import proposed as restore_proposed
from tests.support.restore import restore_input, restore_worker
from tests.support.restore import start as start_restore
from tests.support.workflows import action, entries, incident, proposed, start, terminate, worker_for
from worker.identity import acting_as
from workflows.database_restore import DatabaseRestoreWorkflow
from workflows.incident_response import IncidentResponseWorkflow
from workflows.post_incident import PostIncidentWorkflow


async def test_a_restore_takes_the_incidents_ic_and_refuses_anyone_else(skipping_env):
    env, world, db = skipping_env, World(), DbWorld()
    async with worker_for(env, world) as itq, restore_worker(env, db.activities(), db.handles) as rtq:
        inc = await start(env, world, incident(commander="alice"), itq)
        await until(inc, proposed, "the incident's proposals")
        with acting_as(Principal(name="mallory", roles=["commander"])):  # a commander, not this incident's IC
            refused = await start_restore(env, restore_input(incident_id=inc.id, commander="mallory"), rtq, db.handles)
        with pytest.raises(WorkflowFailureError):
            await refused.result()
        rep = await refused.query(DatabaseRestoreWorkflow.status)
        assert rep.status == "refused" and db.calls["rds_preflight"] == 0 and db.calls["rds_restore"] == 0
        assert "mallory is not the IC (alice)" in (rep.summary or "")
        with acting_as(Principal(name="root", roles=["admin"])):  # an admin may start it; the IC stays alice
            h = await start_restore(env, restore_input(incident_id=inc.id, commander="root"), rtq, db.handles)
        rep = await until(h, restore_proposed("restore"), "gate 1", timeout=30, query=DatabaseRestoreWorkflow.status)
        assert rep.commander == "alice" and len(entries(rep, TimelineKind.COMMANDER, actor="codeblue")) == 1  # "Authority"
        with acting_as(Principal(name="root", roles=["admin"])):
            try:
                await service.decide(env.client, h.id, Decision(action_id="restore", approve=True, by="root"))
                raise AssertionError("an admin who is not the IC decided")
            except service.CodeBlueError as e:
                assert "root is not the incident commander (alice)" in str(e)
        await service.decide(env.client, h.id, Decision(action_id="restore", approve=False, by="alice", reason="no"))
        rep = await h.result()
        assert rep.actions[0].state == ActionState.REJECTED and rep.actions[0].decided_by == "alice"
        await terminate(inc)
    assert db.calls["rds_restore"] == 0


async def test_two_person_rule_needs_two_different_authorized_people(skipping_env):
    world = World()
    world.config = CodeBlueConfig(mitigation=MitigationConfig(approvers=["bob"], two_person=["rollback"]))
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(commander="alice"), tq)
        rep = await until(h, proposed, "proposals")
        c = skipping_env.client
        res = await service.decide(c, h.id, Decision(action_id="rollback", approve=True, by="alice"))
        assert res.state == ActionState.PROPOSED and "1/2" in res.message
        try:
            await service.decide(c, h.id, Decision(action_id="rollback", approve=True, by="alice"))
            raise AssertionError("the same person approved twice")
        except service.CodeBlueError as e:
            assert "two-person rule needs someone else" in str(e)
        for a in rep.actions[1:]:
            await service.decide(c, h.id, Decision(action_id=a.id, approve=False, by="alice", reason="not now"))
        rep = await h.query(IncidentResponseWorkflow.status)
        assert world.effects == [] and rep.actions[0].state == ActionState.PROPOSED  # one approval runs nothing
        first = action(rep, "rollback")
        assert first.approvals == ["alice"] and first.approved_by is None  # approved 1/2
        assert [e.actor for e in entries(rep, TimelineKind.DECISION)][0] == "alice"
        await service.decide(c, h.id, Decision(action_id="rollback", approve=True, by="bob"))
        rep = await until(h, lambda r: r.actions[0].state == ActionState.EXECUTED, "rollback after the second approval")
        assert rep.actions[0].approved_by == "alice, bob"
        await terminate(h)
    assert world.effects == ["rollback 12->11"]


async def test_the_public_reads_neither_the_title_nor_the_internal_summary_and_history_no_webhook(skipping_env):
    world = World()
    secret_hook = "https://hooks.slack.com/services/T000/B000/very-secret-token"
    world.config = CodeBlueConfig(notifications=NotificationConfig(slack_webhook_url=secret_hook))
    title = "Patient Jane Roe (MRN 123456) sees other patients' records"
    acts = [a for a in PostWorld(world=world).activities() if a.__name__ != "worker_config"]
    acts.append(EnvironmentActivities(world.config).worker_config)  # the real one: what reaches history
    tq = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(skipping_env.client, task_queue=tq, workflows=[IncidentResponseWorkflow, PostIncidentWorkflow],
                      activities=acts):
        inp = incident(commander="alice", title=title)
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, proposed, "proposals")
        for a in rep.actions:
            await service.decide(skipping_env.client, h.id, Decision(action_id=a.id, approve=a.id == "rollback",
                                                                     by="alice", reason=None if a.id == "rollback" else "no"))
        await until(h, lambda r: r.actions[0].state == ActionState.EXECUTED, "rollback")
        await service.resolve(skipping_env.client, h.id, Resolution(
            by="alice", summary="Jane Roe's chart was cached under the wrong key", public_summary="Records are correct again."))
        await h.result()
        history = history_text(json.loads((await h.fetch_history()).to_json()))
        await terminate(skipping_env.client.get_workflow_handle(f"{h.id}-postmortem"))
    assert title in history  # the decoding works: the title is in the (internal) history
    public = [u.model_dump_json() for u in world.status_updates] + [m.text for m in world.messages if m.kind == "stakeholders"]
    assert public and not any("Jane Roe" in p or "MRN" in p for p in public)
    assert any("Records are correct again." in p for p in public)
    assert "very-secret-token" not in history and "hooks.slack.com" not in history


async def test_a_raw_cancel_of_a_restore_is_refused_and_the_ics_own_works(skipping_env):
    from temporalio.client import WorkflowUpdateFailedError

    from domain.database_restore import CancelRestore
    from tests.support.identity import raw_client
    from tests.support.restore import IC

    env, db = skipping_env, DbWorld(restore_minutes=30)
    async with restore_worker(env, db.activities(), db.handles) as tq:
        h = await start_restore(env, restore_input(), tq, db.handles)
        await until(h, restore_proposed("restore"), "gate 1", timeout=30, query=DatabaseRestoreWorkflow.status)
        raw = (await raw_client(env)).get_workflow_handle(h.id)
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await raw.execute_update("cancel_restore", CancelRestore(by=IC, reason="raw"))
        assert "no proof of identity" in str(e.value.cause)
        assert [e for e in (await h.query(DatabaseRestoreWorkflow.status)).timeline if e.actor == IC] == []  # no cancel
        await service.decide(env.client, h.id, Decision(action_id="restore", approve=False, by=IC, reason="no"))
        rep = await h.result()
    assert rep.status == "rejected" and db.calls["rds_restore"] == 0
