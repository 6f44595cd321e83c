"""An incident acts on its own service (issue #26): its proposals name that service's release
and deployment; a service the catalog does not know gets its namespace read and nothing
proposed. Fake activities, time-skipping server."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Worker

from domain.config import CodeBlueConfig, ServiceEntry
from domain.incident import Decision, ServiceNaming
from sandbox.memory_world import PostWorld, World, configure_worker
from tests.support.identity import raw_client
from tests.support.polling import until
from tests.support.workflows import incident, skip, start, terminate, worker_for
from workflows.incident_response import IncidentResponseWorkflow
from workflows.post_incident import PostIncidentWorkflow

CATALOG = CodeBlueConfig(services={
    "api-gateway": ServiceEntry(deployments=["api-gateway"], helm_release="healthcare-platform"),
    "patient-portal": ServiceEntry(deployments=["patient-portal"], helm_release="patient-portal",
                                   health_url="https://portal.example/health",
                                   runbook_url="https://wiki.example/runbooks/portal"),
})


async def test_a_patient_portal_incident_proposes_changes_to_the_patient_portal_only(skipping_env):
    world = World()
    inp = incident("P0", service="patient-portal")
    configure_worker(inp.incident_id, CATALOG)
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, lambda r: bool(r.actions), "proposals")
        by_id = {a.id: a.params for a in rep.actions}
        assert by_id["rollback"]["release"] == "patient-portal"
        assert all(p.get("deployment", "patient-portal") == "patient-portal" for p in by_id.values()), by_id
        assert world.probed == ["https://portal.example/health"]
        # its pages link its own runbook
        page = world.pages_to("on_call")[0]
        assert {"href": "https://wiki.example/runbooks/portal", "text": "patient-portal runbook"} in [
            lk.model_dump() for lk in page.links], page.links
        await terminate(h)


async def test_a_service_outside_the_catalog_is_read_but_nothing_is_proposed(skipping_env):
    world = World()
    inp = incident("P0", service="pharmacy")
    configure_worker(inp.incident_id, CATALOG)
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, lambda r: any(e.event == "No mitigation proposed" for e in r.timeline), "no proposal")
        (why,) = [e.result for e in rep.timeline if e.event == "No mitigation proposed"]
        assert "pharmacy is not in the service catalog" in (why or "")
        assert rep.actions == [] and world.calls["helm_history"] == 0 and world.calls["gateway_logs"] == 0
        assert world.calls["pod_status"] >= 1  # the namespace is read
        assert {"kubectl logs deployment/ skipped", "health endpoint probe skipped"} <= {e.event for e in rep.timeline}
        await terminate(h)


async def test_the_ic_names_a_catalog_service_and_the_incident_then_acts_on_it(skipping_env):
    world = World()
    inp = incident("P0", service="pharmacy", commander="alice")
    configure_worker(inp.incident_id, CATALOG)
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        await until(h, lambda r: any(e.event == "No mitigation proposed" for e in r.timeline), "no proposal")
        # raw Temporal access, with the IC's name typed: no proof, refused, nothing changes
        raw = await raw_client(skipping_env)
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await raw.get_workflow_handle(h.id).execute_update("name_service", ServiceNaming(service="patient-portal", by="alice"))
        assert "no proof of identity" in str(e.value.cause), e.value.cause
        for naming, refused in (
            (ServiceNaming(service="patient-portal", by="mallory"), "mallory is not the incident commander"),
            (ServiceNaming(service="pharmacy-v2", by="alice"), "pharmacy-v2 is not in the service catalog either"),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as e:
                await h.execute_update("name_service", naming)
            assert refused in str(e.value.cause), e.value.cause
        msg = await h.execute_update("name_service", ServiceNaming(service="patient-portal", by="alice"), result_type=str)
        assert "is about patient-portal: proposed" in msg, msg
        rep = await until(h, lambda r: bool(r.actions), "proposals for the named service")
        assert rep.service == "patient-portal"
        by_id = {a.id: a.params for a in rep.actions}
        assert by_id["rollback"]["release"] == "patient-portal", by_id
        assert any(e.event == "Service named: patient-portal" and e.actor == "alice" for e in rep.timeline)
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await h.execute_update("name_service", ServiceNaming(service="api-gateway", by="alice"))
        assert "is in the catalog already" in str(e.value.cause)
        await terminate(h)


async def test_a_playbook_acts_on_its_incidents_service_read_from_the_incident(skipping_env):
    """A patient-portal incident's memory playbook (its child) samples and proposes for
    patient-portal: the service comes from the incident's own workflow, not from any input."""
    from domain.high_memory import memory_workflow_id
    from workflows.high_memory import HighMemoryPlaybook

    world = World(oom=True)
    inp = incident("P0", service="patient-portal")
    configure_worker(inp.incident_id, CATALOG)
    tq = f"svc-{uuid.uuid4().hex[:8]}"
    async with Worker(skipping_env.client, task_queue=tq, workflows=[IncidentResponseWorkflow, PostIncidentWorkflow, HighMemoryPlaybook],
                      activities=PostWorld(world=world).activities()):
        h = await start(skipping_env, world, inp, tq)
        await until(h, lambda r: any(a.id == "memory-playbook" for a in r.actions), "the memory playbook proposed")
        await h.execute_update("decide", Decision(action_id="memory-playbook", approve=True, by="alice"))
        child = skipping_env.client.get_workflow_handle(memory_workflow_id(h.id))
        await until(child, lambda r: any(e.event == "Memory sample 1" for e in r.timeline), "the first sample")
        await skip(skipping_env, 5)  # the samples are minutes apart
        rep = await until(child, lambda r: any(e.event == "Memory assessment" for e in r.timeline), "the playbook's assessment")
        events = [e.event for e in rep.timeline]
        assert events[:2] == ["Acting for patient-portal", "High memory playbook: patient-portal in healthcare-prod"], events
        assert not [a for a in rep.actions if a.params.get("deployment") not in (None, "patient-portal")], rep.actions
        await terminate(child)
        await terminate(h)


async def test_the_post_incident_verifies_the_incidents_own_service(skipping_env):
    from domain.incident import Resolution, ResolutionResult
    from domain.post_incident import postmortem_workflow_id

    world = World()
    inp = incident("P0", service="patient-portal", commander="alice")
    configure_worker(inp.incident_id, CATALOG)
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        await until(h, lambda r: any(a.id == "rollback" for a in r.actions), "the rollback proposal")
        await h.execute_update("decide", Decision(action_id="rollback", approve=True, by="alice"))
        await until(h, lambda r: next(a for a in r.actions if a.id == "rollback").state.value == "executed", "the rollback")
        res = await h.execute_update("resolve", Resolution(by="alice", summary="rolled back"), result_type=ResolutionResult)
        assert res.resolved, res
        before = len(world.probed)
        post = skipping_env.client.get_workflow_handle(postmortem_workflow_id(h.id))
        await skip(skipping_env, 5)  # its health probes are a minute apart
        rep = await until(post, lambda r: any(e.event.startswith("Resolution verif") for e in r.timeline), "the verification")
        assert any(e.event == "Resolution verified" for e in rep.timeline), [(e.event, e.result) for e in rep.timeline]
        probed = world.probed[before:]
        assert probed and set(probed) == {"https://portal.example/health"}, probed  # never the gateway's
        await terminate(post)
