"""What PagerDuty and Statuspage hear from an incident's run: the on-call page acknowledged
when the IC takes the incident and resolved at its end (or when it is cancelled), a change
event for the executed rollback, and the status page through all four statuses with the
service's component. Fake activities, time-skipping server."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from domain.config import CodeBlueConfig, UiConfig
from domain.incident import ActionState, CommanderAssignment, Resolution
from sandbox.memory_world import World, configure_worker
from starters import service
from tests.support.polling import until
from tests.support.workflows import action, decide_all, incident, settled, start, worker_for


async def test_a_p0_acknowledges_its_page_reports_its_rollback_and_walks_the_status_page(skipping_env):
    world = World()
    inp = incident("P0", commander=None)
    configure_worker(inp.incident_id, CodeBlueConfig(ui=UiConfig(base_url="https://temporal.example/")))
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        await until(h, lambda r: r.phase.value == "mitigation", "mitigation")
        assert [p.audience.value for p in world.pages] == ["on_call"] and not world.acknowledged_pages
        assert world.pages[0].links[0].href == f"https://temporal.example/namespaces/default/workflows/{inp.incident_id}"
        await service.assign_commander(skipping_env.client, h.id, CommanderAssignment(commander="alice", by="alice"))
        await until(h, lambda r: bool(world.acknowledged_pages), "the page acknowledged")
        assert [p.dedup_key for p in world.acknowledged_pages] == [world.pages[0].dedup_key]
        await decide_all(skipping_env, h, {"rollback"})
        await until(h, lambda r: action(r, "rollback").state == ActionState.EXECUTED, "rollback")
        assert [(c.kind, c.service, c.details["to_revision"]) for c in world.changes] == [("rollback", "api-gateway", "11")]
        assert world.changes[0].links == world.pages[0].links
        await service.resolve(skipping_env.client, h.id, Resolution(by="alice", summary="rolled back"))
        await h.result()
        statuses = [u.status for u in world.status_updates if u.incident_id == inp.incident_id]
        assert statuses[:4] == ["investigating", "identified", "monitoring", "resolved"], statuses
        assert all(u.services == ["api-gateway"] and u.severity == "P0" for u in world.status_updates)
        assert [p.dedup_key for p in world.resolved_pages] == [world.pages[0].dedup_key]


async def test_a_cancelled_incident_resolves_its_pages(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident("P0"), tq)
        await until(h, lambda r: r.phase.value == "mitigation", "mitigation")
        assert world.pages and not world.resolved_pages
        await h.cancel()
        with pytest.raises(WorkflowFailureError):
            await h.result()
        assert await settled(h) is not None
        assert {p.dedup_key for p in world.resolved_pages} == {p.dedup_key for p in world.pages}
