"""DatabaseRestoreWorkflow on the time-skipping server with a scripted RDS and secret."""

from __future__ import annotations

from domain.database_restore import CancelRestore
from domain.incident import ActionState, Decision, TimelineKind
from starters import database_restore, service
from tests.support.db_fakes import OLD_URL, DbWorld
from tests.support.polling import until
from tests.support.restore import IC, approve, events, proposed, restore_config, restore_input, restore_worker, start
from tests.support.workflows import entries, skip
from worker.temporal import replayer
from workflows.database_restore import DatabaseRestoreWorkflow


async def _restore_to_cutover_gate(env, world: DbWorld, tq: str, skip_minutes: float, **kw):
    h = await start(env, restore_input(**kw), tq, world.handles)
    await until(h, proposed("restore"), "gate 1", timeout=30, query=DatabaseRestoreWorkflow.status)
    await approve(env, h, "restore")
    await skip(env, skip_minutes)
    return h


async def test_restore_taking_25_minutes_is_waited_through_and_cut_over(skipping_env):
    env, world = skipping_env, DbWorld(restore_minutes=25)
    async with restore_worker(env, world.activities(), world.handles) as tq:
        h = await _restore_to_cutover_gate(env, world, tq, 26)
        rep = await until(h, proposed("cutover"), "gate 2", timeout=30, query=DatabaseRestoreWorkflow.status)
        gate2 = next(a for a in rep.actions if a.id == "cutover")
        assert "sanity query returned 42" in gate2.reason and "rds.example" in gate2.reason
        await approve(env, h, "cutover")
        rep = await h.result()
    assert rep.status == "restored" and rep.verified is True
    assert [(a.id, a.state, a.approved_by) for a in rep.actions] == [
        ("restore", ActionState.EXECUTED, IC), ("cutover", ActionState.EXECUTED, IC)]
    steps = rep.assessment["database_restore"]["step_seconds"]
    assert 25 * 60 <= steps["wait"] < 27 * 60
    assert {"preflight", "restore", "verify", "cutover", "gate_restore", "gate_cutover"} <= set(steps)
    assert f"{steps['wait']:g} s" in [e.result for e in entries(rep, TimelineKind.STEP)]  # the wait's step entry
    assert world.calls["rds_wait_available"] >= 20  # polled at the configured interval, not once
    assert world.secret != OLD_URL and "rds.example" in world.secret
    assert world.base.effects.count("restart api-gateway") == 1
    assert not world.base.pages_to("engineering_manager")


async def test_a_restore_retried_after_the_instance_was_created_adopts_it(skipping_env):
    env, world = skipping_env, DbWorld(restore_minutes=1, restore_lost_responses=1)
    async with restore_worker(env, world.activities(), world.handles) as tq:
        h = await _restore_to_cutover_gate(env, world, tq, 2)
        rep = await until(h, proposed("cutover"), "gate 2", timeout=30, query=DatabaseRestoreWorkflow.status)
    assert world.calls["rds_restore"] == 2 and list(world.instances) == ["healthcare-prod-restored"]
    restore = next(a for a in rep.actions if a.id == "restore")
    assert restore.state == ActionState.EXECUTED and "adopted from an earlier attempt" in (restore.result or "")


async def test_past_the_limit_pages_the_em_and_keeps_waiting(skipping_env):
    env, world = skipping_env, DbWorld(restore_minutes=66)
    async with restore_worker(env, world.activities(), world.handles) as tq:
        h = await _restore_to_cutover_gate(env, world, tq, 61, config=restore_config(limit_minutes=60))
        # the limit's entry: actor "sla", no clock of the report (TimelineKind.EVENT), and its page
        rep = await until(h, lambda r: bool(entries(r, TimelineKind.EVENT, actor="sla"))
                          and bool(world.base.pages_to("engineering_manager")), "limit", timeout=30, query=DatabaseRestoreWorkflow.status)
        assert len(entries(rep, TimelineKind.EVENT, actor="sla")) == 1
        assert [p.dedup_key.rsplit(":", 1)[-1] for p in world.base.pages_to("engineering_manager")] == ["db-restore-limit"]
        assert not any(a.id == "cutover" for a in rep.actions)
        await skip(env, 6)
        await until(h, proposed("cutover"), "gate 2 after the limit", timeout=30, query=DatabaseRestoreWorkflow.status)


async def test_ic_cancels_the_wait_nothing_is_cut_over(skipping_env):
    env, world = skipping_env, DbWorld(restore_minutes=600)
    async with restore_worker(env, world.activities(), world.handles) as tq:
        h = await _restore_to_cutover_gate(env, world, tq, 5)
        await database_restore.cancel_restore(env.client, h.id.removesuffix("-db-restore"), CancelRestore(by=IC, reason="restoring elsewhere"))
        rep = await h.result()
    assert rep.status == "cancelled" and "Restore wait cancelled" in events(rep)
    assert world.secret == OLD_URL and world.backup is None


async def test_preflight_failure_changes_nothing(skipping_env):
    env, world = skipping_env, DbWorld(preflight_error="snapshot snap-x does not exist")
    async with restore_worker(env, world.activities(), world.handles) as tq:
        h = await start(env, restore_input(), tq, world.handles)
        rep = await h.result()
    assert rep.status == "preflight_failed" and "snapshot snap-x does not exist" in (rep.summary or "")
    assert rep.actions == [] and world.calls["rds_preflight"] == 1
    assert world.calls["rds_restore"] == 0 and world.secret == OLD_URL


async def test_rejected_restore_changes_nothing(skipping_env):
    env, world = skipping_env, DbWorld()
    async with restore_worker(env, world.activities(), world.handles) as tq:
        h = await start(env, restore_input(), tq, world.handles)
        await until(h, proposed("restore"), "gate 1", timeout=30, query=DatabaseRestoreWorkflow.status)
        await service.decide(env.client, h.id, Decision(action_id="restore", approve=False, by=IC, reason="not yet"))
        rep = await h.result()
    assert rep.status == "rejected" and world.calls["rds_restore"] == 0 and not world.instances


async def test_failed_post_cutover_check_restores_the_secret_restarts_and_pages_em(skipping_env):
    env, world = skipping_env, DbWorld(restore_minutes=1, check_fails_on_restored=True)
    async with restore_worker(env, world.activities(), world.handles) as tq:
        h = await _restore_to_cutover_gate(env, world, tq, 2)
        await until(h, proposed("cutover"), "gate 2", timeout=30, query=DatabaseRestoreWorkflow.status)
        await approve(env, h, "cutover")
        rep = await h.result()
    assert rep.status == "cutover_compensated" and rep.verified is False
    cut = next(a for a in rep.actions if a.id == "cutover")
    assert cut.state == ActionState.FAILED and "compensated" in (cut.result or "")
    assert world.secret == OLD_URL
    assert world.base.effects.count("restart api-gateway") == 2  # cutover, then compensation
    comp = [e.event for e in entries(rep, TimelineKind.COMPENSATION)]
    # which undo step each entry is is only in its words: the start, the secret back, then the check, done last
    assert comp[0] == "Cutover failed; compensating" and comp[-1] == "Compensated cutover"
    assert comp.index("Compensation: old database secret restored") < comp.index("Compensation: connection check passed")
    assert list(world.instances) == ["healthcare-prod-restored"]  # kept for forensics
    assert [p.dedup_key.rsplit(":", 1)[-1] for p in world.base.pages_to("engineering_manager")] == ["db-cutover-failed"]


async def test_replay(skipping_env):
    env, world = skipping_env, DbWorld(restore_minutes=3, check_fails_on_restored=True)
    async with restore_worker(env, world.activities(), world.handles) as tq:
        h = await _restore_to_cutover_gate(env, world, tq, 4)
        await until(h, proposed("cutover"), "gate 2", timeout=30, query=DatabaseRestoreWorkflow.status)
        await approve(env, h, "cutover")
        await h.result()
        history = await h.fetch_history()
    await replayer([DatabaseRestoreWorkflow]).replay_workflow(history)
