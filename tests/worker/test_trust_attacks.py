"""The attacks of the trust review (THREAT-MODEL.md), each through Temporal itself on the real
dev server: a raw client with no CodeBlue credential, or one replaying what it copied from a
history. None changes production, loses an alert or puts a name on a line nobody wrote."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio import client as tclient
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.worker import Worker

from activities.environment import EnvironmentActivities
from domain.alerts import AlertBatch, AlertNotice
from domain.identity import HEADER
from domain.incident import (
    Action,
    ActionKind,
    ActionState,
    CommanderAssignment,
    Decision,
    IncidentCarry,
    Note,
    Phase,
    TimelineKind,
    Undo,
)
from domain.post_incident import Reopen
from domain.severity import Severity
from sandbox.memory_world import PostWorld, World
from starters import service
from starters.api.alerts import alert_sender, incident_id_for, signal_with_start
from starters.service import CodeBlueError
from tests.support.paths import ROOT
from tests.support.polling import until
from tests.support.workflows import entries, incident, proposed
from worker.identity import acting_as
from worker.temporal import data_converter
from workflows.incident_response import IncidentResponseWorkflow
from workflows.post_incident import PostIncidentWorkflow


@asynccontextmanager
async def incident_worker(client: Client, world: World) -> AsyncIterator[str]:
    """The incident and post-incident workflows on a fresh task queue, the in-memory world's
    activities but the real `worker_config` (it checks a start proof was never used before)."""
    tq = f"tq-{uuid.uuid4().hex[:8]}"
    real_config = EnvironmentActivities(world.config).worker_config
    async with Worker(client, task_queue=tq, workflows=[IncidentResponseWorkflow, PostIncidentWorkflow],
                      activities=PostWorld(world=world).activities(replace=[real_config])):
        try:
            yield tq
        finally:
            for h in world.handles:
                try:
                    await h.terminate("test done")
                except Exception:  # noqa: BLE001 - already closed
                    pass


async def raw_client(client: Client, converter: Any = None, replaying: Payload | None = None) -> Client:
    """Temporal's own client: CodeBlue's converter (unless given) and no operator key;
    `replaying`: a proof copied from a history, put on every start, signal and update it sends."""
    return await Client.connect(client.service_client.config.target_host, namespace=client.namespace,
                                data_converter=converter or data_converter(),
                                interceptors=[_HeaderClient(replaying)] if replaying is not None else [])


async def waiting_for_the_ic(client: Client, world: World, tq: str) -> WorkflowHandle:
    """A signed P0 on `tq`, once its proposals wait for the IC."""
    h = await service.start_incident(client, incident(), tq)
    world.handles.append(h)
    await until(h, proposed, "proposals")
    return h


async def refused(h: WorkflowHandle) -> str:
    with pytest.raises(WorkflowFailureError) as e:
        await h.result()
    return str(e.value.cause)


async def start_header(h: WorkflowHandle) -> Payload:
    async for ev in h.fetch_history_events():
        return ev.workflow_execution_started_event_attributes.header.fields[HEADER]
    raise AssertionError("no history")


def planted_carry() -> IncidentCarry:
    """A continued run's state as an attacker would type it: an approved scale to 0 and a saga
    step whose 'compensation' points the database secret elsewhere."""
    scale = Action(id="scale", kind=ActionKind.SCALE_UP, reason="planted", state=ActionState.APPROVED,
                   params={"namespace": "healthcare-prod", "deployment": "api-gateway", "replicas": 0},
                   approved_by="alice")
    return IncidentCarry(
        started_at="2026-01-01T00:00:00+00:00", severity=Severity.P0, phase=Phase.MITIGATION, commander="alice",
        actions=[scale], saga=[Undo(action_id="scale", activity="db_secret_point",
                                    arg={"host": "attacker.example", "port": 5432}, summary="planted")])


async def test_cron_runs_are_refused_every_time_and_a_planted_carry_never_loads(dev_env):
    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        raw = await raw_client(dev_env.client)
        inp = incident().model_copy(update={"carried": planted_carry()})
        h = await raw.start_workflow("IncidentResponseWorkflow", inp, id=inp.incident_id, task_queue=tq,
                                     cron_schedule="@every 1s")
        world.handles.append(dev_env.client.get_workflow_handle(inp.incident_id))
        async def listed() -> list[str]:
            return [wf.run_id async for wf in dev_env.client.list_workflows(f'WorkflowId = "{inp.incident_id}"')]

        # until the schedule ran twice (run 2 is a "continued" run)
        runs = await until(listed, lambda r: len(r) >= 3, "three runs of the schedule", timeout=20)
        assert len(runs) >= 3, runs
        for run_id in runs[1:]:  # every finished run: refused, nothing touched
            rep = await dev_env.client.get_workflow_handle(inp.incident_id, run_id=run_id).query(IncidentResponseWorkflow.status)
            assert rep.status == "refused" and rep.actions == [], rep.timeline
            assert "cron schedules are refused" in (rep.timeline[0].result or "")
        await h.terminate("test done")
    assert world.effects == [] and world.pages == []


async def test_a_start_proof_copied_from_a_closed_incident_opens_nothing(dev_env):
    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        h = await waiting_for_the_ic(dev_env.client, world, tq)
        await h.terminate("closed")
        pages = len(world.pages)
        # the attacker copies the start's input and proof out of the history and starts it again
        header = await start_header(h)
        inp = (await h.query(IncidentResponseWorkflow.status)).incident_id
        first = None
        async for ev in h.fetch_history_events():
            first = ev.workflow_execution_started_event_attributes.input
            break
        raw = await raw_client(dev_env.client, replaying=header)
        again = await raw.start_workflow("IncidentResponseWorkflow", _raw_arg(first), id=inp, task_queue=tq,
                                         id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
        why = await refused(again)
    assert "already used by run" in why
    assert len(world.pages) == pages and world.effects == []  # nobody paged again, nothing touched


def _raw_arg(payloads: Any) -> Any:
    """The start input exactly as it was (a raw value: no re-encoding)."""
    from temporalio.common import RawValue

    return RawValue(payloads.payloads[0])


async def test_a_refused_start_frees_its_id_for_the_real_one(dev_env):
    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        inp = incident()
        raw = await raw_client(dev_env.client)
        squat = await raw.start_workflow("IncidentResponseWorkflow", inp, id=inp.incident_id, task_queue=tq)
        assert "no proof of identity" in await refused(squat)
        h = await service.start_incident(dev_env.client, inp, tq)  # the same ID: free again
        world.handles.append(h)
        rep = await until(h, proposed, "proposals")
        assert rep.status == "open" and rep.commander == "alice"


async def test_a_command_proof_from_one_run_is_refused_in_the_next(dev_env):
    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        inp = incident(commander=None)
        h1 = await service.start_incident(dev_env.client, inp, tq)
        await until(h1, proposed, "run 1 proposals")
        await service.assign_commander(dev_env.client, inp.incident_id, CommanderAssignment(commander="alice", by="alice"))
        await until(h1, lambda r: r.commander == "alice", "run 1 has alice as IC")
        decision = Decision(action_id="scale", approve=False, by="alice", reason="not now")
        await service.decide(dev_env.client, inp.incident_id, decision)
        signal_header = update_header = None
        async for ev in h1.fetch_history_events():
            if ev.HasField("workflow_execution_signaled_event_attributes"):
                signal_header = ev.workflow_execution_signaled_event_attributes.header.fields[HEADER]
            if ev.HasField("workflow_execution_update_accepted_event_attributes"):
                update_header = ev.workflow_execution_update_accepted_event_attributes.accepted_request.input.header.fields[HEADER]
        await h1.terminate("closed")
        h2 = await service.start_incident(dev_env.client, inp.model_copy(update={"commander": "bob"}), tq)
        world.handles.append(h2)
        await until(h2, proposed, "run 2 proposals")
        # the attacker replays run 1's signed hand-over into run 2
        raw = await raw_client(dev_env.client, replaying=signal_header)
        await raw.get_workflow_handle(inp.incident_id).signal(IncidentResponseWorkflow.assign_commander,
                                                               CommanderAssignment(commander="alice", by="alice"))
        rep = await until(h2, lambda r: bool(entries(r, TimelineKind.IGNORED)), "the replay ignored")
        assert rep.commander == "bob"
        assert "was made for run" in (entries(rep, TimelineKind.IGNORED)[0].result or "")
        # ... and run 1's signed decision: rejected before anything is written
        raw = await raw_client(dev_env.client, replaying=update_header)
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await raw.get_workflow_handle(inp.incident_id).execute_update(IncidentResponseWorkflow.decide, decision)
        assert "was made for run" in str(e.value.cause)
        assert (await h2.query(IncidentResponseWorkflow.status)).actions[1].state == ActionState.PROPOSED


class _HeaderClient(tclient.Interceptor):
    """A client interceptor that puts one copied proof on every start, signal and update."""

    def __init__(self, header: Payload | None) -> None:
        self.header = header

    def intercept_client(self, next: tclient.OutboundInterceptor) -> tclient.OutboundInterceptor:
        header = self.header

        class _Out(tclient.OutboundInterceptor):
            async def start_workflow(self, input: tclient.StartWorkflowInput) -> Any:
                if header is not None:
                    input.headers = {**input.headers, HEADER: header}
                return await super().start_workflow(input)

            async def signal_workflow(self, input: tclient.SignalWorkflowInput) -> None:
                if header is not None:
                    input.headers = {**input.headers, HEADER: header}
                await super().signal_workflow(input)

            async def start_workflow_update(self, input: tclient.StartWorkflowUpdateInput) -> Any:
                if header is not None:
                    input.headers = {**input.headers, HEADER: header}
                return await super().start_workflow_update(input)

        return _Out(next)


async def test_oversized_and_unsigned_commands_are_bounded_and_the_incident_still_answers(dev_env):
    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        h = await waiting_for_the_ic(dev_env.client, world, tq)
        raw = (await raw_client(dev_env.client)).get_workflow_handle(h.id)
        for _ in range(3):  # over the limit: fails to decode, dropped
            await raw.signal(IncidentResponseWorkflow.reopen, Reopen.model_construct(by="alice", reason="r" * 1_500_000))
        for i in range(28):  # unsigned: refused, counted, ten listed
            await raw.signal(IncidentResponseWorkflow.add_note, Note(by="alice", text=f"fake {i}"))
        await raw.signal("not_a_codeblue_signal", {"by": "alice"})  # no such handler: refused too
        await raw.signal(IncidentResponseWorkflow.add_alerts, AlertBatch(notices=[AlertNotice(  # not from the API
            dedup_key="k", alertname="Fake", status="firing", severity="P0", service="api-gateway", received_by="alice")]))
        rep = await until(h, lambda r: r.unverified_commands >= 30, "thirty refusals counted")
        assert not entries(rep, TimelineKind.ALERT)
        assert len(entries(rep, TimelineKind.IGNORED)) == 11  # ten, then one line saying the rest are counted
        assert all(e.actor == "(unverified)" for e in entries(rep, TimelineKind.IGNORED))
        assert not entries(rep, TimelineKind.NOTE)
        # the incident still decides and answers
        res = await service.decide(dev_env.client, h.id, Decision(action_id="scale", approve=False, by="alice", reason="no"))
        assert res.state == ActionState.REJECTED


async def test_a_plaintext_signal_to_an_encrypted_incident_fails_alone(dev_env, monkeypatch):
    from worker.codec import new_key

    monkeypatch.setenv("CODEBLUE_CODEC_KEY", new_key())
    encrypted = await Client.connect(dev_env.client.service_client.config.target_host, namespace=dev_env.client.namespace,
                                     data_converter=data_converter(), interceptors=dev_env.client.config()["interceptors"])
    world = World()
    async with incident_worker(encrypted, world) as tq:
        h = await service.start_incident(encrypted, incident(), tq)
        world.handles.append(h)
        await until(h, proposed, "proposals")
        plain = (await raw_client(dev_env.client, converter=dataclasses.replace(data_converter(), payload_codec=None)))
        monkeypatch.delenv("CODEBLUE_CODEC_KEY")
        await plain.get_workflow_handle(h.id).signal(IncidentResponseWorkflow.add_note, Note(by="alice", text="plaintext"))
        with pytest.raises(WorkflowUpdateFailedError):
            await plain.get_workflow_handle(h.id).execute_update(
                IncidentResponseWorkflow.decide, Decision(action_id="rollback", approve=True, by="alice"))
        # the incident goes on: status answers, a real decision runs
        res = await service.decide(encrypted, h.id, Decision(action_id="scale", approve=False, by="alice", reason="no"))
        assert res.state == ActionState.REJECTED
        rep = await service.status(encrypted, h.id)
        assert rep.status == "open" and not entries(rep, TimelineKind.NOTE)


async def test_a_workflow_parked_on_an_alert_id_does_not_swallow_the_alert(dev_env):
    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        key = f"alertname=Down,service=api-gateway,run={uuid.uuid4().hex[:6]}"
        squatted = incident_id_for(key)
        raw = await raw_client(dev_env.client)
        parked = await raw.start_workflow("IncidentResponseWorkflow", incident(), id=squatted, task_queue="nobody-polls")
        notice = AlertNotice(dedup_key=key, alertname="Down", status="firing", severity="P0", service="api-gateway",
                             fingerprint="fp-1", summary="gateway down")
        from starters.api.alerts import joinable_id

        target = await joinable_id(dev_env.client, key, tq)
        assert target == incident_id_for(key, 2)
        await signal_with_start(dev_env.client, target, notice, tq, "add_alerts", AlertBatch(notices=[notice]))
        h = dev_env.client.get_workflow_handle(target)
        world.handles.append(h)
        rep = await until(h, lambda r: bool(entries(r, TimelineKind.ALERT)) and bool(entries(r, TimelineKind.NOTIFICATION)),
                          "the alert on its incident, and the page")
        assert rep.severity == Severity.P0 and world.pages  # paged, as a P0 alert must
        await parked.terminate("test done")


async def test_the_alert_prefix_is_the_alert_paths_and_a_worse_alert_escalates(dev_env):
    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        with pytest.raises(CodeBlueError, match="alert path"):
            await service.start_incident(dev_env.client, incident().model_copy(update={"incident_id": "ALERT-abc"}), tq)
        # signed, but by a commander rather than the alert path: the worker refuses it too
        inp = incident(severity="P3").model_copy(update={"incident_id": f"ALERT-{uuid.uuid4().hex[:12]}"})
        h = await dev_env.client.start_workflow(IncidentResponseWorkflow.run, inp, id=inp.incident_id, task_queue=tq)
        assert "alert path" in await refused(h)
        # the alert path's own P3, joined by a P0 alert: escalated
        key = f"alertname=Slow,run={uuid.uuid4().hex[:6]}"
        iid = incident_id_for(key)
        slow = AlertNotice(dedup_key=key, alertname="Slow", status="firing", severity="P3", service="api-gateway", fingerprint="a")
        down = AlertNotice(dedup_key=key, alertname="Down", status="firing", severity="P0", service="api-gateway", fingerprint="b")
        await signal_with_start(dev_env.client, iid, slow, tq, "add_alerts", AlertBatch(notices=[slow]))
        alert_incident = dev_env.client.get_workflow_handle(iid)
        world.handles.append(alert_incident)
        await until(alert_incident, lambda r: len(entries(r, TimelineKind.ALERT)) == 1, "the P3 alert")
        with acting_as(alert_sender("alertmanager")):
            await alert_incident.signal(IncidentResponseWorkflow.add_alerts, AlertBatch(notices=[down]))
        rep = await until(alert_incident, lambda r: r.severity == Severity.P0, "escalated to P0")
        assert entries(rep, TimelineKind.ESCALATED)


async def test_an_update_with_start_from_a_raw_client_starts_and_decides_nothing(dev_env):
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        inp = incident()
        raw = await raw_client(dev_env.client)
        op = WithStartWorkflowOperation(IncidentResponseWorkflow.run, inp, id=inp.incident_id, task_queue=tq,
                                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        with pytest.raises(WorkflowUpdateFailedError):
            await raw.execute_update_with_start_workflow(
                IncidentResponseWorkflow.decide, Decision(action_id="rollback", approve=True, by="alice"),
                start_workflow_operation=op)
        assert "no proof of identity" in await refused(await op.workflow_handle())
    assert world.effects == [] and world.pages == []


async def test_a_commander_cannot_start_a_procedure_for_an_incident_nobody_opened(dev_env):
    from domain.identity import Principal
    from domain.redis_cache import CacheInput
    from starters.redis_cache import start_cache_playbook

    world = World()
    async with incident_worker(dev_env.client, world) as tq:
        async with Worker(dev_env.client, task_queue=tq + "-pb", workflows=[_cache_playbook()],
                          activities=PostWorld(world=world).activities()):
            with acting_as(Principal(name="mallory", roles=["commander"])):
                h = await start_cache_playbook(dev_env.client, CacheInput(incident_id=f"INC-MADE-UP-{uuid.uuid4().hex[:6]}",
                                                                 requested_by="mallory"), tq + "-pb")
            assert "is not an admin" in await refused(h)


def _cache_playbook() -> type:
    from workflows.redis_cache import RedisCachePlaybook

    return RedisCachePlaybook


def test_the_api_will_not_start_without_the_operator_key():
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEBLUE_OPERATOR")}
    done = subprocess.run(["codeblue", "api", "--port", "1"], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "no operator key" in done.stderr and len(done.stderr.strip().splitlines()) == 1


async def test_a_note_replayed_after_a_continue_as_new_is_not_applied_again(dev_env):
    from domain.config import LimitsConfig

    world = World()
    # room for the note in the first run, then continued runs
    world.config = world.config.model_copy(update={"limits": LimitsConfig(continue_as_new_after_events=150)})
    async with incident_worker(dev_env.client, world) as tq:
        h = await waiting_for_the_ic(dev_env.client, world, tq)
        await service.add_note(dev_env.client, h.id, Note(by="alice", text="bed 4 back online"))
        rep = await until(h, lambda r: len(entries(r, TimelineKind.NOTE)) == 1, "the note")
        note_header = None
        async for ev in h.fetch_history_events():
            if ev.HasField("workflow_execution_signaled_event_attributes"):
                note_header = ev.workflow_execution_signaled_event_attributes.header.fields[HEADER]
        first_run = (await h.describe()).run_id
        for i in range(150):  # signed alerts until the history is long enough to continue as new
            n = AlertNotice(dedup_key="k", alertname="Noise", status="firing", severity="P2", service="api-gateway",
                            fingerprint=f"fp-{i}")
            with acting_as(alert_sender("alertmanager")):
                await h.signal(IncidentResponseWorkflow.add_alerts, AlertBatch(notices=[n]))
        await until(h.describe, lambda d: d.run_id != first_run, "the continued run current", timeout=20)
        assert (await h.describe()).run_id != first_run
        raw = await raw_client(dev_env.client, replaying=note_header)
        await raw.get_workflow_handle(h.id).signal(IncidentResponseWorkflow.add_note, Note(by="alice", text="bed 4 back online"))
        rep = await until(h, lambda r: r.unverified_commands == 1, "the replayed note refused")
        assert len(entries(rep, TimelineKind.NOTE)) == 1
        assert "already used" in (entries(rep, TimelineKind.IGNORED)[-1].result or "")


def test_a_compensation_kept_as_data_names_only_a_fixed_activity():
    import ast

    from workflows.steps import COMPENSATIONS

    assert set(COMPENSATIONS) == {"helm_rollback", "scale_deployment"}
    # every Undo a workflow builds names its activity through one of those methods
    root = ROOT / "workflows"
    named = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Undo":
                kw = {k.arg: k.value for k in node.keywords}
                assert "activity" in kw, path
                named.add(ast.unparse(kw["activity"]))
    assert named == {"activity_name(HelmActivities.helm_rollback)", "activity_name(KubernetesActivities.scale_deployment)"}
