"""DatabaseConnectionPlaybook on the time-skipping server with a scripted RDS, gateway and secret."""

from __future__ import annotations

import pytest

from domain.database_restore import restore_workflow_id
from domain.incident import ActionKind, ActionState, Decision, TimelineKind
from starters import service
from starters.db_connections import start_db_connections
from starters.service import CodeBlueError
from tests.support.db_connections import PATIENT_LINE, ConnWorld, conn_input, conn_worker
from tests.support.histories import history_text
from tests.support.polling import until
from tests.support.restore import IC, approve, events, proposed
from tests.support.workflows import entries, kinds_after, skip
from worker.temporal import replayer
from workflows.database_restore import DatabaseRestoreWorkflow
from workflows.db_connections import DatabaseConnectionPlaybook

PLAYBOOK = DatabaseConnectionPlaybook.status  # what `until` asks, unless a wait names the restore child's


async def _start(env, world: ConnWorld, tq: str, **kw):
    h = await start_db_connections(env.client, conn_input(**kw), tq)
    world.handles.append(h)
    return h


async def test_approved_restart_is_verified_and_raw_log_lines_stay_out_of_history(skipping_env):
    env, world = skipping_env, ConnWorld()
    async with conn_worker(env, world) as tq:
        h = await _start(env, world, tq)
        rep = await until(h, proposed("restart"), "the restart proposal", timeout=30, query=PLAYBOOK)
        restart = rep.actions[0]
        assert restart.kind == ActionKind.ROLLOUT_RESTART and "30 connection lines (30 pool exhausted)" in restart.reason
        assert len(entries(rep, TimelineKind.STEP)) == 3  # the instance, the pool's log lines, the reachability
        facts = rep.assessment["db_connections"]
        assert facts["instance"]["status"] == "available" and facts["reachability"]["ok"] is True
        assert world.db.base.effects == []  # nothing changes before the IC approves
        await approve(env, h, "restart")
        rep = await h.result()
        history = await h.fetch_history()
    assert rep.status == "resolved" and rep.verified is True
    assert [(a.id, a.state, a.approved_by) for a in rep.actions] == [("restart", ActionState.EXECUTED, IC)]
    assert world.db.base.effects == ["restart api-gateway"]
    facts = rep.assessment["db_connections"]
    assert facts["instance"]["pending_modifications"] == {"DBInstanceClass": "db.r6g.xlarge"}
    assert facts["logs"]["error_counts"]["connection"] == 30 and facts["logs_after"]["error_counts"]["connection"] == 0
    assert not world.db.base.pages_to("engineering_manager")
    text = history_text(history.to_json_dict())  # payloads decoded
    assert '"pool_exhausted":30' in text.replace(" ", "")  # the counts are there...
    assert "MRN-0042" not in text and PATIENT_LINE not in text  # ...the lines are not
    replay = await replayer([DatabaseConnectionPlaybook]).replay_workflow(
        history, raise_on_replay_failure=False)
    assert replay.replay_failure is None, replay.replay_failure


async def test_restart_that_does_not_fix_the_pool_is_not_verified_and_pages_the_em(skipping_env):
    env, world = skipping_env, ConnWorld(restart_fixes=False)
    async with conn_worker(env, world) as tq:
        h = await _start(env, world, tq)
        await until(h, proposed("restart"), "the restart proposal", timeout=30, query=PLAYBOOK)
        await approve(env, h, "restart")
        rep = await h.result()
    assert rep.status == "not_verified" and rep.verified is False
    assert "connection lines in the new pods' logs" in (rep.summary or "") and "/health not ok" in (rep.summary or "")
    # three rounds of readings and a health check after the restart: "not verified yet" twice, then the page
    rnd = [TimelineKind.STEP, TimelineKind.STEP, TimelineKind.VERIFICATION]
    assert kinds_after(rep, TimelineKind.EXECUTED) == [
        *rnd, TimelineKind.VERIFICATION, *rnd, TimelineKind.VERIFICATION, *rnd, TimelineKind.NOTIFICATION]
    assert [p.dedup_key.rsplit(":", 1)[-1] for p in world.db.base.pages_to("engineering_manager")] == ["db-connections-unresolved"]


async def test_only_the_ic_decides_and_a_rejection_changes_nothing(skipping_env):
    env, world = skipping_env, ConnWorld()
    async with conn_worker(env, world) as tq:
        h = await _start(env, world, tq)
        await until(h, proposed("restart"), "the restart proposal", timeout=30, query=PLAYBOOK)
        with pytest.raises(CodeBlueError, match="mallory is not the incident commander"):
            await service.decide(env.client, h.id, Decision(action_id="restart", approve=True, by="mallory"))
        await h.signal(DatabaseConnectionPlaybook.approve, Decision(action_id="restart", approve=True, by="mallory"))
        rep = await until(h, lambda r: bool(entries(r, TimelineKind.IGNORED, actor="mallory")), "the ignored signal", timeout=30, query=PLAYBOOK)
        assert rep.actions[0].state == ActionState.PROPOSED
        await service.decide(env.client, h.id, Decision(action_id="restart", approve=False, by=IC, reason="pool is fine"))
        rep = await h.result()
    assert rep.status == "rejected" and rep.actions[0].state == ActionState.REJECTED
    assert world.db.base.effects == [] and world.db.calls["rollout_restart"] == 0


async def test_instance_down_proposes_the_restore_child_and_runs_it_on_approval(skipping_env):
    env, world = skipping_env, ConnWorld(rds_status="stopped")
    world.db.restore_minutes = 1
    async with conn_worker(env, world) as tq:
        h = await _start(env, world, tq)
        rep = await until(h, proposed("restore"), "the restore proposal", timeout=30, query=PLAYBOOK)
        assert [a.id for a in rep.actions] == ["restore"]  # no restart: it cannot help
        act = rep.actions[0]
        wid = restore_workflow_id(h.id.removesuffix("-db-connections"))
        assert act.kind == ActionKind.PLAYBOOK and act.params["workflow"] == "DatabaseRestoreWorkflow"
        assert act.params["workflow_id"] == wid and "is stopped" in act.reason
        await approve(env, h, "restore")
        child = env.client.get_workflow_handle(wid)
        world.handles.append(child)
        await until(child, proposed("restore"), "the child's restore gate", query=DatabaseRestoreWorkflow.status, timeout=30)
        await approve(env, child, "restore")
        await skip(env, 2)
        await until(child, proposed("cutover"), "the child's cutover gate", query=DatabaseRestoreWorkflow.status, timeout=30)
        await approve(env, child, "cutover")
        rep = await h.result()
    assert rep.status == "restored" and rep.verified is True
    assert rep.actions[0].state == ActionState.EXECUTED and rep.actions[0].approved_by == IC
    assert f"{wid} ended restored" in (rep.actions[0].result or "")
    assert "Started DatabaseRestoreWorkflow" in events(rep)
    assert world.db.calls["rds_restore"] == 1 and world.db.base.effects == ["restart api-gateway"]  # the child's cutover


async def test_instance_missing_proposes_the_restore_and_rejection_starts_nothing(skipping_env):
    env, world = skipping_env, ConnWorld(rds_status=None)
    async with conn_worker(env, world) as tq:
        h = await _start(env, world, tq)
        rep = await until(h, proposed("restore"), "the restore proposal", timeout=30, query=PLAYBOOK)
        assert "could not be described" in rep.actions[0].reason
        await service.decide(env.client, h.id, Decision(action_id="restore", approve=False, by=IC, reason="restoring by hand"))
        rep = await h.result()
    assert rep.status == "rejected" and world.db.calls["rds_preflight"] == 0


async def test_a_restore_already_running_for_the_incident_is_not_started_twice(skipping_env):
    from starters import database_restore
    from tests.support.restore import restore_input

    env, world = skipping_env, ConnWorld(rds_status="failed")
    async with conn_worker(env, world) as tq:
        h = await _start(env, world, tq)
        iid = h.id.removesuffix("-db-connections")
        world.handles.append(await database_restore.start_restore(env.client, restore_input(incident_id=iid), tq))
        await until(h, proposed("restore"), "the restore proposal", timeout=30, query=PLAYBOOK)
        await approve(env, h, "restore")
        rep = await h.result()
    assert rep.status == "restore_running" and "already running" in (rep.actions[0].result or "")
    assert world.db.calls["rds_preflight"] == 1  # only the first restore's
