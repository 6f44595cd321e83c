"""Affected services (issue #26): the assessment reads every catalog service's health at once,
lists the unhealthy ones and names what they share; a shared database ranks the database check
first and the incident's own rollback below it. Fake activities, time-skipping server."""

from __future__ import annotations

from domain.config import CodeBlueConfig, ServiceEntry
from sandbox.memory_world import World, configure_worker
from tests.support.polling import until
from tests.support.workflows import incident, start, terminate, worker_for

PLATFORM = CodeBlueConfig(services={
    "api-gateway": ServiceEntry(deployments=["api-gateway"], helm_release="healthcare-platform",
                                health_url="https://gw.example/health", depends_on=["healthcare-db"]),
    "patient-portal": ServiceEntry(deployments=["patient-portal"], health_url="https://portal.example/health",
                                   depends_on=["healthcare-db"]),
    "pharmacy": ServiceEntry(deployments=["pharmacy"], health_url="https://pharmacy.example/health",
                             depends_on=["healthcare-db"]),
    "billing": ServiceEntry(deployments=["billing"], health_url="https://billing.example/health", depends_on=["billing-db"]),
})


async def test_a_shared_database_down_is_named_and_its_one_database_proposal_ranks_above_the_rollback(skipping_env):
    world = World(health_by_url={"https://portal.example/health": False, "https://pharmacy.example/health": False,
                                 "https://billing.example/health": True})
    inp = incident("P0", service="api-gateway")
    configure_worker(inp.incident_id, PLATFORM)
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, lambda r: bool(r.actions), "proposals")
        a = rep.assessment or {}
        assert a["unhealthy_services"] == ["api-gateway", "patient-portal", "pharmacy"]
        assert (a["shared_cause"], a["shared_cause_of"]) == ("healthcare-db", ["api-gateway", "patient-portal", "pharmacy"])
        ranked = sorted(rep.actions, key=lambda x: x.rank or 99)
        # one database proposal (the playbook checks the connection itself), ranked first
        database = [x.id for x in rep.actions if x.id in ("db-check", "db-connections-playbook")]
        assert database == ["db-connections-playbook"], [x.id for x in rep.actions]
        assert ranked[0].id == "db-connections-playbook"
        assert "healthcare-db is shared by the unhealthy" in (ranked[0].recommendation or "")
        rollback = next(x for x in rep.actions if x.id == "rollback")
        assert rollback.rank and rollback.rank > 1 and not rollback.recommended
        assert {"https://portal.example/health", "https://pharmacy.example/health",
                "https://billing.example/health"} <= set(world.probed)  # every other service, once each
        assert any("Shared cause: healthcare-db" in (e.result or "") for e in rep.timeline)
        await terminate(h)


async def test_alone_unhealthy_the_incidents_own_deploy_stays_first(skipping_env):
    world = World(health_by_url={u: True for u in ("https://portal.example/health", "https://pharmacy.example/health",
                                                   "https://billing.example/health")})
    inp = incident("P0", service="api-gateway")
    configure_worker(inp.incident_id, PLATFORM)
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, lambda r: bool(r.actions), "proposals")
        assert (rep.assessment or {})["shared_cause"] is None
        assert next(x for x in rep.actions if x.recommended).id == "rollback"
        await terminate(h)
