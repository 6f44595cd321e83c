"""The blast-radius policy across incidents: the guard workflow (workflows.blast_radius) reached
through the worker's activities. Two incidents approving one release's rollback at once give
one rollback; the hourly rate refuses a step naming its rule, and only an admin's recorded
override goes past it; nobody but the worker asks the guard anything."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.blast_radius import BlastRadiusActivities
from activities.helm import HelmActivities
from activities.http_client import tls_context
from domain.blast_radius import (
    GUARD_WORKFLOW,
    BlastRadiusConfig,
    GuardInput,
    GuardState,
    LeaseDone,
    Mutation,
    MutationKind,
    Rule,
    guard_id,
)
from domain.cluster import HelmQuery
from domain.identity import keyring_from_env
from domain.incident import ActionState, Decision, Resolution, TimelineKind
from sandbox.memory_world import PostWorld, World
from sandbox.scenarios import NAMESPACE, RELEASE, sandbox_environment
from starters import service
from tests.support.identity import raw_client
from tests.support.polling import until
from tests.support.sandbox_incident import start_p0
from tests.support.workflows import entries, incident, start, terminate
from worker.identity import IdentityInterceptor
from worker.main import activities_for
from workflows.blast_radius import BlastRadiusGuard
from workflows.incident_response import IncidentResponseWorkflow
from workflows.post_incident import PostIncidentWorkflow


def _rollback(r):
    return next(a for a in r.actions if a.id == "rollback")


async def _rollback_proposed(h):
    return await until(h, lambda r: any(a.id == "rollback" for a in r.actions), "the rollback proposal", 60)


async def test_two_incidents_approving_one_release_rollback_at_once_give_one_rollback(dev_env):
    """Real activities on the bad-deploy sandbox: the second waits for the first's lease, then
    finds the release moved and is not run; its timeline says for whom it waited and why."""
    async with sandbox_environment("bad-deploy") as sb, httpx.AsyncClient(verify=tls_context(), timeout=5) as http:
        tq = f"br-{uuid.uuid4().hex[:6]}"
        async with Worker(dev_env.client, task_queue=tq, workflows=[IncidentResponseWorkflow, PostIncidentWorkflow, BlastRadiusGuard],
                          activities=activities_for(sb.config, http)):
            (ia, ha), (ib, hb) = await asyncio.gather(start_p0(dev_env.client, tq, "BR-A"), start_p0(dev_env.client, tq, "BR-B"))
            await asyncio.gather(_rollback_proposed(ha), _rollback_proposed(hb))
            await asyncio.gather(*(service.decide(dev_env.client, h.id, Decision(action_id="rollback", approve=True, by="ic"))
                                   for h in (ha, hb)))

            def settled(r):
                return _rollback(r).state != ActionState.APPROVED

            ra, rb = await asyncio.gather(until(ha, settled, "A's rollback", 120), until(hb, settled, "B's rollback", 120))
            history = await HelmActivities(sb.config.helm.command, {"KUBECONFIG": str(sb.cluster.kubeconfig_path)}).helm_history(
                HelmQuery(release=RELEASE, namespace=NAMESPACE))
            rollbacks = [r for r in history.revisions if r.revision > 12]
            assert len(rollbacks) == 1, [r.description for r in rollbacks]
            states = sorted(_rollback(r).state.value for r in (ra, rb))
            assert states == ["executed", "superseded"], states
            second = ra if _rollback(ra).state == ActionState.SUPERSEDED else rb
            first_id = ib if second is ra else ia
            # it waited for the first's lease if it asked while the first held it (else it asked after)
            waited = [e for e in entries(second, TimelineKind.EXECUTING) if e.event.startswith("Waited for")]
            assert all(f"{first_id}/rollback" in (e.result or "") for e in waited), [e.event for e in second.timeline]
            assert any(e.event == "Not run rollback: the world moved since the decision" for e in second.timeline)
            for iid in (ia, ib):
                await service.resolve(dev_env.client, iid, Resolution(by="ic", summary="done", force=True))
            await asyncio.gather(ha.result(), hb.result())
            guard = dev_env.client.get_workflow_handle(guard_id(tq))
            state = await guard.query("blast_radius", result_type=GuardState)
            # the second's step changed nothing: only the rollback that ran counts against the hour
            assert not state.leases and [c.holder for c in state.changes] == [f"{first_id}/rollback"]


def _one_rollback_an_hour(world: World) -> None:
    world.config = world.config.model_copy(update={
        "blast_radius": BlastRadiusConfig(per_hour={MutationKind.ROLLBACK: 1})})


async def _worker(env, world: World):
    """The fakes' world with the real guard (workflow and activities) on a fresh task queue."""
    tq = f"br-{uuid.uuid4().hex[:8]}"
    real = BlastRadiusActivities(world.config.blast_radius)
    return tq, Worker(env.client, task_queue=tq, workflows=[IncidentResponseWorkflow, PostIncidentWorkflow, BlastRadiusGuard],
                      activities=PostWorld(world=world).activities(replace=[real.acquire_target, real.release_target]))


async def test_the_hourly_rate_refuses_naming_its_rule_and_only_an_admins_override_goes_past_it(skipping_env):
    world = World()
    _one_rollback_an_hour(world)
    tq, worker = await _worker(skipping_env, world)
    async with worker:
        first = await start(skipping_env, world, incident(), tq)
        await _rollback_proposed(first)
        await first.execute_update("decide", Decision(action_id="rollback", approve=True, by="alice"))
        await until(first, lambda r: _rollback(r).state == ActionState.EXECUTED, "the first rollback", 30)

        world.healthy = False  # the gateway breaks again: another incident, another rollback proposed
        second = await start(skipping_env, world, incident(), tq)
        await _rollback_proposed(second)
        await second.execute_update("decide", Decision(action_id="rollback", approve=True, by="alice"))
        rep = await until(second, lambda r: _rollback(r).state != ActionState.APPROVED,
                          "the second rollback settled", 30)
        act = _rollback(rep)
        assert act.state == ActionState.SUPERSEDED and act.blast_radius_rule == "per-target-per-hour", act
        assert "per-target-per-hour" in (act.result or "") and "(at most 1)" in (act.result or "")
        assert world.calls["helm_rollback"] == 1

        # a commander who is not an admin cannot override; the refusal says so and changes nothing
        third = await start(skipping_env, world, incident(), tq)  # the gateway is still broken
        await _rollback_proposed(third)
        commander = await raw_client(skipping_env, IdentityInterceptor(keyring_from_env(), via="", roles=["commander"]))
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await commander.get_workflow_handle(third.id).execute_update(
                "decide", Decision(action_id="rollback", approve=True, by="alice", override="it is urgent"))
        assert "only an admin may override" in str(e.value.cause)
        # an admin's override goes past the rate, recorded with its reason
        await third.execute_update("decide", Decision(action_id="rollback", approve=True, by="alice",
                                                      override="the first rollback went to the wrong revision"))
        rep = await until(third, lambda r: _rollback(r).state == ActionState.EXECUTED,
                          "the overridden rollback", 30)
        act = _rollback(rep)
        assert act.override == "the first rollback went to the wrong revision" and act.override_by
        assert any(e.event == "Blast-radius rule per-target-per-hour overridden for rollback"
                   and "the first rollback went to the wrong revision" in (e.result or "") for e in rep.timeline)
        assert world.calls["helm_rollback"] == 2
        for h in (first, second, third):
            await terminate(h)


async def test_nobody_but_the_worker_asks_the_guard(skipping_env):
    """Raw Temporal access (no proof) and a signed commander without the admin role are refused;
    a guard started raw does nothing."""
    world = World()
    tq, worker = await _worker(skipping_env, world)
    async with worker:
        gid = guard_id(tq)
        raw = await raw_client(skipping_env)
        ask = Mutation(kind=MutationKind.ROLLBACK, target="release/healthcare-prod/healthcare-platform",
                       incident_id="INC-X", step="rollback")
        # a raw start of the guard's ID is a refused start: it ends without guarding anything
        hr = await raw.start_workflow(GUARD_WORKFLOW, GuardInput(scope=tq), id=gid, task_queue=tq)
        await hr.result()
        # the worker's own path starts the real one; the raw and the commander's asks are refused
        h = await start(skipping_env, world, incident(), tq)
        await _rollback_proposed(h)
        await h.execute_update("decide", Decision(action_id="rollback", approve=True, by="alice"))
        await until(h, lambda r: _rollback(r).state == ActionState.EXECUTED, "the rollback", 30)
        for client in (raw, await raw_client(skipping_env, IdentityInterceptor(keyring_from_env(), via="", roles=["commander"]))):
            for name, arg in (("acquire_target", ask), ("release_target", LeaseDone(target=ask.target, holder="INC-A/rollback"))):
                with pytest.raises(WorkflowUpdateFailedError) as e:
                    await client.get_workflow_handle(gid).execute_update(name, arg)
                assert "refused" in str(e.value.cause), (name, e.value.cause)
        state = await skipping_env.client.get_workflow_handle(gid).query("blast_radius", result_type=GuardState)
        assert not state.leases and len(state.changes) == 1  # the incident's own, and nothing else
        await terminate(h)


def _as_step_of(env, tq: str, workflow_id: str, run_id: str) -> ActivityEnvironment:
    """The guard's activities run as a step of that workflow run would run them."""
    a = ActivityEnvironment(client=env.client)
    a.info = dataclasses.replace(a.info, workflow_id=workflow_id, workflow_run_id=run_id, task_queue=tq)
    return a


async def test_a_second_step_on_a_held_target_waits_for_the_first_to_let_go(dev_env):
    """Real time on the dev server: the second ask is answered only once the first lets go,
    and its answer names whom it waited for."""
    world = World()
    tq, worker = await _worker(dev_env, world)
    guard = BlastRadiusActivities(BlastRadiusConfig(wait_seconds=60))
    target = "release/healthcare-prod/healthcare-platform"
    async with worker:
        a = await start(dev_env, world, incident(), tq)
        b = await start(dev_env, world, incident(), tq)
        first = Mutation(kind=MutationKind.ROLLBACK, target=target, incident_id=a.id, step="rollback")
        second = Mutation(kind=MutationKind.ROLLBACK, target=target, incident_id=b.id, step="rollback")
        assert (await _as_step_of(dev_env, tq, a.id, a.result_run_id or "").run(guard.acquire_target, first)).granted
        asking = asyncio.ensure_future(_as_step_of(dev_env, tq, b.id, b.result_run_id or "").run(guard.acquire_target, second))
        await asyncio.sleep(2)
        assert not asking.done()  # held: it waits
        done = LeaseDone(target=target, holder=first.holder)
        assert await _as_step_of(dev_env, tq, a.id, a.result_run_id or "").run(guard.release_target, done)
        got = await asyncio.wait_for(asking, 30)
        assert got.granted and "granted after waiting" in got.detail and f"{a.id}/rollback" in got.detail, got
        for h in (a, b):
            await terminate(h)


async def test_a_lease_whose_run_closed_without_letting_go_is_freed_at_the_next_ask(dev_env):
    """A step's run killed (terminated) while it held its target: the next ask gets the target
    at once (real time, on the dev server), not after its wait or the lease's hold runs out."""
    world = World()
    tq, worker = await _worker(dev_env, world)
    guard = BlastRadiusActivities(BlastRadiusConfig(wait_seconds=300))
    target = "deployment/healthcare-prod/api-gateway"
    async with worker:
        dead = await start(dev_env, world, incident(), tq)
        await _rollback_proposed(dead)
        await terminate(dead)

        first = Mutation(kind=MutationKind.RESTART, target=target, incident_id=dead.id, step="restart")
        got = await _as_step_of(dev_env, tq, dead.id, dead.result_run_id or "").run(guard.acquire_target, first)
        assert got.granted
        other = Mutation(kind=MutationKind.RESTART, target=target, incident_id="INC-NEXT", step="restart")
        live = await start(dev_env, world, incident(), tq)
        got = await asyncio.wait_for(_as_step_of(dev_env, tq, live.id, live.result_run_id or "").run(guard.acquire_target, other), 30)
        assert got.granted, got
        state = await dev_env.client.get_workflow_handle(guard_id(tq)).query("blast_radius", result_type=GuardState)
        assert state.leases[target].holder == "INC-NEXT/restart"
        await terminate(live)


async def test_a_lease_outlives_its_worker_and_a_dev_server_sigkill(tmp_path):
    """The guard is a workflow: a lease taken under one worker is still held after that worker
    stops and the server is SIGKILLed and started again on its file, and is let go of there."""
    from types import SimpleNamespace

    from starters.devserver import PersistentDevServer
    from tests.support.identity import signing_interceptors

    world = World()
    guard = BlastRadiusActivities(BlastRadiusConfig(wait_seconds=0))
    target = "deployment/healthcare-prod/api-gateway"
    async with PersistentDevServer(tmp_path / "temporal.db") as server:
        env = SimpleNamespace(client=await server.client(interceptors=signing_interceptors()))
        tq, first_worker = await _worker(env, world)
        async with first_worker:
            h = await service.start_incident(env.client, incident(), tq)
            run = h.result_run_id or ""
            ask = Mutation(kind=MutationKind.SCALE, target=target, incident_id=h.id, step="scale", replicas=5)
            assert (await _as_step_of(env, tq, h.id, run).run(guard.acquire_target, ask)).granted
        server.kill()
        await server.start()
        env = SimpleNamespace(client=await server.client(interceptors=signing_interceptors()))
        second_worker = Worker(env.client, task_queue=tq, workflows=[IncidentResponseWorkflow, PostIncidentWorkflow,
                                                                     BlastRadiusGuard],
                               activities=PostWorld(world=world).activities())
        async with second_worker:
            state = await env.client.get_workflow_handle(guard_id(tq)).query("blast_radius", result_type=GuardState)
            assert state.leases[target].holder == f"{h.id}/scale"
            other = Mutation(kind=MutationKind.SCALE, target=target, incident_id="INC-OTHER", step="scale", replicas=5)
            held = await _as_step_of(env, tq, "INC-OTHER", "").run(guard.acquire_target, other)
            assert not held.granted and held.rule == Rule.HELD and held.holder == f"{h.id}/scale", held
            done = LeaseDone(target=target, holder=ask.holder)
            assert await _as_step_of(env, tq, h.id, run).run(guard.release_target, done)
            await env.client.get_workflow_handle(h.id).terminate("test done")
