"""The runbook's clocks: diagnostics by 5:00, assessment and communication by 15:00."""

from __future__ import annotations

from domain.incident import Decision, Resolution, TimelineKind
from sandbox.memory_world import World
from starters import service
from tests.support.polling import until
from tests.support.workflows import clock, entries, incident, proposed, skip, start, worker_for


async def _close(env, handle, world: World) -> None:
    rep = await until(handle, proposed, "proposals")
    for a in rep.actions:
        await service.decide(env.client, handle.id, Decision(action_id=a.id, approve=False, by="alice", reason="test"))
    world.healthy = True
    await service.resolve(env.client, handle.id, Resolution(by="alice", summary="done"))


async def test_slas_met_when_the_work_is_fast(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await _close(skipping_env, h, world)
        rep = await h.result()
    assert {c.name: c.met for c in rep.sla} == {"diagnostics": True, "assessment": True, "communication": True}
    assert [c.due_seconds for c in rep.sla] == [300, 900, 900]
    assert world.pages_to("engineering_manager") == []
    assert len(world.pages_to("on_call")) == 1


async def test_diagnostics_sla_missed_at_exactly_5_minutes_pages_the_manager(skipping_env):
    world = World(failing={"pod_status"})  # the cluster API keeps failing
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await skip(skipping_env, 5.5)
        rep = await until(h, lambda r: bool(entries(r, TimelineKind.SLA)), "diagnostics SLA miss")
        assert clock(rep, "diagnostics").met is False
        assert [e.at_seconds for e in entries(rep, TimelineKind.SLA)] == [300.0]  # the miss, at the due instant
        assert [p.dedup_key.split(":")[-1] for p in world.pages_to("engineering_manager")] == ["sla-diagnostics"]
        assert rep.sla[0].met is False
        world.failing.clear()  # the API recovers; the incident keeps going
        await _close(skipping_env, h, world)
        rep = await h.result()
    assert rep.status == "resolved"
    assert clock(rep, "diagnostics").met is False
    assert entries(rep, TimelineKind.STEP, actor="codeblue")[0].at_seconds > 300  # the diagnostics step, done late


async def test_assessment_sla_missed_at_15_minutes_and_communication_still_goes_out(skipping_env):
    world = World(failing={"deployment_status"})  # assessment hangs
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await skip(skipping_env, 15.5)
        rep = await until(h, lambda r: clock(r, "communication").met is not None, "communication at 15:00")
        assessment = clock(rep, "assessment")
        assert assessment.met is False and assessment.due_seconds == 900.0
        assert 900.0 in [e.at_seconds for e in entries(rep, TimelineKind.SLA)]  # the miss, at the due instant
        assert len(world.status_updates) == 1
        sent = [e.at_seconds for e in entries(rep, TimelineKind.NOTIFICATION) if e.at_seconds >= 900.0]
        assert sent and all(at < 901 for at in sent)  # the status page update went out at 15:00
        assert {c.name: c.met for c in rep.sla} == {"diagnostics": True, "assessment": False, "communication": True}
        assert "assessment still running" in world.messages[0].text
        assert [p.dedup_key.split(":")[-1] for p in world.pages_to("engineering_manager")] == ["sla-assessment"]
        world.failing.clear()
        await _close(skipping_env, h, world)
        await h.result()


async def test_p2_takes_the_light_path_and_pages_nobody(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident("P2", title="search results slow"), tq)
        rep = await until(h, lambda r: r.phase.value == "mitigation", "light path done")
        assert rep.actions == [] and rep.sla == []
        world.healthy = True
        await service.resolve(skipping_env.client, h.id, Resolution(by="alice", summary="fixed"))
        rep = await h.result()
    assert world.pages == []
    assert world.status_updates == []
    assert [m.kind for m in world.messages] == ["stakeholders", "stakeholders"]
    assert rep.status == "resolved"
