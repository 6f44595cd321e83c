"""Only the IC changes production; proposals wait, remind and escalate, never auto-execute."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.incident import CommanderAssignment, Decision, Escalation, Resolution, TimelineKind
from domain.severity import Severity
from sandbox.memory_world import World
from starters import service
from starters.service import CodeBlueError
from tests.support.polling import until
from tests.support.workflows import decide_all, entries, incident, proposed, start, terminate, worker_for
from workflows.incident_response import IncidentResponseWorkflow


async def _decide_all(env, h, approve: set[str], by: str = "alice"):
    return await decide_all(env, h, approve, by=by, reason="not needed")


async def test_ic_approves_the_rollback_and_it_runs_once(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        rep = await _decide_all(skipping_env, h, {"rollback"})
        assert [a.id for a in rep.actions] == ["rollback", "scale", "restart", "db-check", "db-connections-playbook"]
        await until(h, lambda r: r.actions[0].state.value == "executed", "rollback executed")
        res = await service.resolve(skipping_env.client, h.id, Resolution(by="alice", summary="rolled back 12 -> 11"))
        assert res.resolved and res.verified
        rep = await h.result()
    assert world.effects == ["rollback 12->11"]
    states = {a.id: (a.state.value, a.approved_by) for a in rep.actions}
    assert states["rollback"] == ("executed", "alice")
    assert states["scale"] == ("rejected", None)
    assert rep.status == "resolved" and rep.verified is True
    assert world.status_updates[-1].status == "resolved"
    # PagerDuty's lifecycle: every page the incident raised is resolved with it
    assert world.pages and {p.dedup_key for p in world.resolved_pages} == {p.dedup_key for p in world.pages}
    assert all(p.service == "api-gateway" for p in world.pages)


async def test_update_from_someone_else_is_rejected_with_a_reason(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await until(h, proposed, "proposals")
        with pytest.raises(CodeBlueError, match="mallory is not the incident commander"):
            await service.decide(skipping_env.client, h.id, Decision(action_id="rollback", approve=True, by="mallory"))
        with pytest.raises(CodeBlueError, match="unknown action 'nuke'"):
            await service.decide(skipping_env.client, h.id, Decision(action_id="nuke", approve=True, by="alice"))
        with pytest.raises(CodeBlueError, match="needs a reason"):
            await service.decide(skipping_env.client, h.id, Decision(action_id="scale", approve=False, by="alice"))
        await service.decide(skipping_env.client, h.id, Decision(action_id="scale", approve=False, by="alice", reason="no"))
        with pytest.raises(CodeBlueError, match="already decided"):
            await service.decide(skipping_env.client, h.id, Decision(action_id="scale", approve=True, by="alice"))
        rep = await h.query(IncidentResponseWorkflow.status)
        assert next(a for a in rep.actions if a.id == "rollback").state.value == "proposed"
        with pytest.raises(CodeBlueError, match="mallory is not the incident commander"):
            await service.resolve(skipping_env.client, h.id, Resolution(by="mallory", summary="x"))
        await terminate(h)
    assert world.effects == []


async def test_signal_from_someone_else_is_recorded_as_ignored(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await until(h, proposed, "proposals")
        await h.signal(IncidentResponseWorkflow.approve, Decision(action_id="rollback", approve=True, by="mallory"))
        rep = await until(h, lambda r: bool(entries(r, TimelineKind.IGNORED, actor="mallory")), "ignored signal")
        assert len(entries(rep, TimelineKind.IGNORED)) == 1 and not entries(rep, TimelineKind.DECISION)
        assert next(a for a in rep.actions if a.id == "rollback").state.value == "proposed"
        # the IC's signal counts
        await h.signal(IncidentResponseWorkflow.approve, Decision(action_id="rollback", approve=True, by="alice"))
        await until(h, lambda r: r.actions[0].state.value == "executed", "IC signal applied: the rollback runs at once")
        await terminate(h)
    assert world.effects == ["rollback 12->11"]


async def test_waiting_proposals_remind_the_ic_then_page_the_manager_and_never_run(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        rep = await until(h, proposed, "proposals")
        t0 = entries(rep, TimelineKind.PROPOSED)[-1].at_seconds  # the watch starts as the last proposal is filed
        await skipping_env.sleep(timedelta(minutes=5, seconds=5))
        # the proposal watch's entries: actor "sla", not an SLA clock (those are TimelineKind.SLA)
        rep = await until(h, lambda r: len(entries(r, TimelineKind.EVENT, actor="sla")) == 1, "reminder")
        assert [p.contact for p in world.pages_to("commander")] == ["alice"]
        assert world.pages_to("engineering_manager") == []
        await skipping_env.sleep(timedelta(minutes=5, seconds=5))
        rep = await until(h, lambda r: len(entries(r, TimelineKind.EVENT, actor="sla")) == 2, "escalation")
        assert [p.contact for p in world.pages_to("commander")] == ["alice"] and len(world.pages_to("engineering_manager")) == 1
        at = entries(rep, TimelineKind.EVENT, actor="sla")[1].at_seconds
        assert at - t0 == pytest.approx(600, abs=1)
        await skipping_env.sleep(timedelta(hours=2))
        rep = await h.query(IncidentResponseWorkflow.status)
        assert all(a.state.value == "proposed" for a in rep.actions)
        await terminate(h)
    assert world.effects == []
    assert len(world.pages_to("engineering_manager")) == 1


async def test_no_commander_means_no_decisions_until_one_is_assigned(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(commander=None), tq)
        await until(h, proposed, "proposals")
        with pytest.raises(CodeBlueError, match="no incident commander"):
            await service.decide(skipping_env.client, h.id, Decision(action_id="rollback", approve=True, by="alice"))
        await service.assign_commander(skipping_env.client, h.id, CommanderAssignment(commander="bob", by="oncall"))
        await until(h, lambda r: r.commander == "bob", "commander assigned")
        res = await service.decide(skipping_env.client, h.id, Decision(action_id="rollback", approve=True, by="bob"))
        assert res.state.value == "approved"
        await terminate(h)


async def test_escalation_repages_on_call(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident("P1"), tq)
        await until(h, proposed, "proposals")
        await service.escalate(skipping_env.client, h.id, Escalation(severity=Severity.P0, by="alice", reason="patients affected"))
        rep = await until(h, lambda r: len(world.pages_to("on_call")) == 2, "re-page")
        assert rep.severity.value == "P0"
        assert world.pages_to("on_call")[-1].severity == "P0"
        await terminate(h)


async def test_duplicate_incident_is_refused(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        inp = incident()
        h = await start(skipping_env, world, inp, tq)
        with pytest.raises(CodeBlueError, match=f"incident {inp.incident_id} already"):
            await start(skipping_env, world, inp, tq)
        await until(h, proposed, "proposals")
        await terminate(h)


async def test_resolve_is_refused_while_unhealthy_unless_forced(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await until(h, proposed, "proposals")
        res = await service.resolve(skipping_env.client, h.id, Resolution(by="alice", summary="looks fine?"))
        assert not res.resolved and "pods not ready" in res.message
        res = await service.resolve(skipping_env.client, h.id, Resolution(by="alice", summary="closing", force=True))
        assert res.resolved and not res.verified
        rep = await h.result()
    assert rep.status == "resolved_unverified"


async def test_approved_playbook_starts_as_a_child_with_its_own_gates(skipping_env):
    from domain.high_memory import memory_workflow_id

    world = World(oom=True)  # OOMKilled gateway pods: the runbook's High Memory Usage
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        rep = await _decide_all(skipping_env, h, {"memory-playbook"})
        act = next(a for a in rep.actions if a.id == "memory-playbook")
        assert act.kind.value == "playbook" and "OOMKilled" in act.reason
        rep = await until(h, lambda r: next(a for a in r.actions if a.id == "memory-playbook").state.value == "executed", "playbook started")
        child = skipping_env.client.get_workflow_handle(memory_workflow_id(h.id))
        desc = await child.describe()
        assert desc.workflow_type == "HighMemoryPlaybook"
        assert (next(a for a in rep.actions if a.id == "memory-playbook").result or "").startswith(f"started {child.id}")
        await child.terminate("test done")
        await terminate(h)
    assert world.effects == []  # the incident itself changed nothing; the playbook decides


async def test_connection_errors_propose_the_db_connections_playbook(skipping_env):
    from domain.db_connections import db_connections_workflow_id

    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        rep = await _decide_all(skipping_env, h, {"db-connections-playbook"})
        act = next(a for a in rep.actions if a.id == "db-connections-playbook")
        assert "connection errors" in act.reason and act.params == {"workflow": "DatabaseConnectionPlaybook"}
        await until(h, lambda r: next(a for a in r.actions if a.id == act.id).state.value == "executed", "playbook started")
        child = skipping_env.client.get_workflow_handle(db_connections_workflow_id(h.id))
        assert (await child.describe()).workflow_type == "DatabaseConnectionPlaybook"
        await child.terminate("test done")
        await terminate(h)
