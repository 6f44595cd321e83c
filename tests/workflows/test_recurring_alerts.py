"""An alert key that fires again after its incident was resolved: each run of `ALERT-<hash>`
completes with a post-mortem of its own, and a post-mortem's `reopen` reaches only its run."""

from __future__ import annotations

import uuid

from domain.alerts import AlertNotice
from domain.incident import CommanderAssignment, Decision, Resolution, TimelineKind
from domain.post_incident import PostIncidentInput
from sandbox.memory_world import World, configure_worker
from starters import post_incident, service
from starters.api.alerts import signal_with_start
from tests.support.polling import until
from tests.support.post_incident import config
from tests.support.workflows import entries, proposed, skip, worker_for
from workflows.incident_response import IncidentResponseWorkflow


def _notice(key: str, n: int) -> AlertNotice:
    return AlertNotice(dedup_key=key, alertname="GatewayDown", status="firing", severity="P1", service="api-gateway",
                       fingerprint=f"fp-{n}", summary=f"firing again ({n})")


async def _open_and_resolve(env, world: World, iid: str, tq: str, n: int):
    await signal_with_start(env.client, iid, _notice(iid, n), tq, "add_alert", _notice(iid, n))
    h = env.client.get_workflow_handle_for(IncidentResponseWorkflow.run, iid)  # the newest run
    world.handles.append(h)
    await until(h, lambda r: bool(r.assessment) and len(entries(r, TimelineKind.STEP)) >= 2 and
                f"firing again ({n})" in [e.result for e in entries(r, TimelineKind.ALERT)], f"run {n} assessed")
    await service.assign_commander(env.client, iid, CommanderAssignment(commander="alice", by="alice"))
    await until(h, lambda r: r.commander == "alice", f"run {n} has an IC")
    res = await service.resolve(env.client, iid, Resolution(by="alice", summary=f"recovered ({n})"))
    assert res.resolved, res.message
    return await h.result()


async def test_three_incidents_in_a_row_on_one_alert_key_each_get_their_post_mortem(skipping_env):
    env, world = skipping_env, World(healthy=True)
    iid = f"ALERT-{uuid.uuid4().hex[:20]}"
    configure_worker(iid, config(health_probes=1))
    async with worker_for(env, world) as tq:
        reports = [await _open_and_resolve(env, world, iid, tq, n) for n in (1, 2, 3)]
        pms = [r.postmortem_workflow_id for r in reports]
        for wid in pms:
            world.handles.append(env.client.get_workflow_handle(wid))
        assert pms == [f"{iid}-postmortem", f"{iid}-postmortem-2", f"{iid}-postmortem-3"]
        assert all(r.status == "resolved" and [e.actor for e in entries(r, TimelineKind.POST_INCIDENT)] == ["codeblue"]
                   for r in reports)  # each run's "Post-incident started"
        for wid in pms:  # each post-mortem is its own, still tracking its run
            assert (await env.client.get_workflow_handle(wid).describe()).status.name == "RUNNING"
        draft = await post_incident.draft(env.client, iid)
        assert "recovered (3)" in draft  # `codeblue postmortem ID` reads the latest run's
        # the report reached the child by reference: its start input names the run, nothing more
        hist = await env.client.get_workflow_handle(pms[2]).fetch_history()
        started = hist.events[0].workflow_execution_started_event_attributes
        inp = await env.client.data_converter.decode(started.input.payloads, [PostIncidentInput])
        assert inp[0].report is None and inp[0].report_ref.run_id == inp[0].incident_run_id
        assert inp[0].report_ref.run_id == (await env.client.get_workflow_handle(iid).describe()).run_id


async def test_a_post_mortems_reopen_reaches_its_own_run_not_the_next(skipping_env):
    env, world = skipping_env, World(healthy=True)
    iid = f"ALERT-{uuid.uuid4().hex[:20]}"
    configure_worker(iid, config(health_probes=2, probe_interval_seconds=60))
    async with worker_for(env, world) as tq:
        first = await _open_and_resolve(env, world, iid, tq, 1)
        world.healthy = False  # the first post-mortem's verification will fail
        await signal_with_start(env.client, iid, _notice(iid, 2), tq, "add_alert", _notice(iid, 2))
        second = env.client.get_workflow_handle_for(IncidentResponseWorkflow.run, iid)
        world.handles.append(second)
        pm = env.client.get_workflow_handle(first.postmortem_workflow_id)
        world.handles.append(pm)
        await skip(env, 3)
        reopened = env.client.get_workflow_handle_for(IncidentResponseWorkflow.run, f"{iid[:55]}-reopened")
        world.handles.append(reopened)
        rep = await until(reopened, lambda r: bool(r.timeline), "the linked incident the closed run needed")
        assert "failed verification" in " ".join(e.result or "" for e in rep.timeline)
        run2 = await second.query(IncidentResponseWorkflow.status)
        assert run2.status == "open" and not entries(run2, TimelineKind.POST_INCIDENT)  # no reopen note


async def test_each_run_gets_its_own_playbook_while_an_earlier_runs_is_still_open(skipping_env):
    from domain.high_memory import memory_workflow_id

    env, world = skipping_env, World(oom=True)  # OOMKilled pods: the High Memory playbook is proposed
    iid = f"ALERT-{uuid.uuid4().hex[:20]}"
    async with worker_for(env, world) as tq:
        children = []
        for n in (1, 2):
            await signal_with_start(env.client, iid, _notice(iid, n), tq, "add_alert", _notice(iid, n))
            h = env.client.get_workflow_handle_for(IncidentResponseWorkflow.run, iid)  # the newest run
            world.handles.append(h)
            await service.assign_commander(env.client, iid, CommanderAssignment(commander="alice", by="alice"))
            rep = await until(h, lambda r: proposed(r) and r.commander == "alice", f"run {n} proposals")
            for a in rep.actions:
                ok = a.id == "memory-playbook"
                await service.decide(env.client, iid, Decision(action_id=a.id, approve=ok, by="alice", reason=None if ok else "no"))
            rep = await until(h, lambda r: next(a for a in r.actions if a.id == "memory-playbook").state.value
                              in ("executed", "failed"), f"run {n} playbook")
            act = next(a for a in rep.actions if a.id == "memory-playbook")
            assert act.state.value == "executed", act.result
            assert act.result is not None
            children.append(act.result.split()[1].rstrip(";"))
            await service.resolve(env.client, iid, Resolution(by="alice", summary=f"run {n}", force=True))
            await h.result()
        base = memory_workflow_id(iid)
        assert children == [base, f"{base}-2"]
        for cid in children:  # the first run's playbook still open, untouched by the second
            assert (await env.client.get_workflow_handle(cid).describe()).status.name == "RUNNING"
            await env.client.get_workflow_handle(cid).terminate("test done")
        assert world.effects == []
