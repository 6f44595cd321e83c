"""The high-memory playbook: samples on durable timers (time skipping), leak suspects,
scale-up undone on resolution unless kept. Kubernetes through the sandbox emulator."""

from __future__ import annotations

import uuid

import httpx
from temporalio import activity
from temporalio.worker import Worker

from activities.http_client import tls_context
from domain.cluster import MetricsReport, NamespaceQuery, PodMetric
from domain.high_memory import MemoryInput, MemoryResolution, leak_suspects
from domain.incident import ActionState, Decision, TimelineKind
from sandbox.scenarios import GATEWAY, NAMESPACE, sandbox_environment
from starters import service
from starters.high_memory import resolve_memory, start_memory_playbook
from tests.support.cluster import deployment
from tests.support.polling import until
from tests.support.service_recovery import events
from tests.support.workflows import entries, kinds, kinds_after
from worker.main import activities_for
from worker.temporal import replayer
from workflows.blast_radius import BlastRadiusGuard
from workflows.high_memory import HighMemoryPlaybook

MI = 2**20


def test_leak_suspects_need_growth_at_every_sample():
    samples = [{"a": 100, "b": 100, "c": 100}, {"a": 110, "b": 120, "c": 100}, {"a": 121, "b": 115, "c": 101}]
    assert leak_suspects(samples, 0.05) == {"a": 0.21}  # b dipped, c grew by 1% only
    assert leak_suspects(samples[:1], 0.0) == {}


class Leaking:
    """pod_metrics of three leaking pods: each sample reports 40Mi more than the last."""

    def __init__(self) -> None:
        self.calls = 0

    @activity.defn(name="pod_metrics")
    async def pod_metrics(self, q: NamespaceQuery) -> MetricsReport:
        self.calls += 1
        used = (300 + 40 * self.calls) * MI
        return MetricsReport(namespace=q.namespace, pods=[
            PodMetric(pod=f"{GATEWAY}-abc-{i}", memory_bytes=used + i, memory_limit_bytes=512 * MI) for i in range(3)
        ])


async def _run(env, keep_scale: bool):
    async with sandbox_environment("memory-leak") as sb, httpx.AsyncClient(verify=tls_context(), timeout=5) as http:
        sb.config.memory.sample_interval_seconds = 120  # minutes apart, as in production
        metrics = Leaking()
        acts = [a for a in activities_for(sb.config, http) if getattr(a, "__name__", "") != "pod_metrics"]
        tq = f"tq-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=tq, workflows=[HighMemoryPlaybook, BlastRadiusGuard], activities=[*acts, metrics.pod_metrics]):
            inp = MemoryInput(incident_id=f"INC-{uuid.uuid4().hex[:8]}", requested_by="oncall", commander="alice",
                              config=sb.config)
            h = await start_memory_playbook(env.client, inp, tq)
            async def sampled():
                """The playbook's status; before its proposals, a minute more of server time (the
                samples are minutes apart: server time is skipped a minute at a time)."""
                rep = await h.query(HighMemoryPlaybook.status)
                if not rep.actions:
                    await env.sleep(60)
                return rep

            rep = await until(sampled, lambda r: bool(r.actions), "the proposals after the samples", timeout=60,
                              poll=0.02, max_poll=0.02)
            assert rep.actions, events(rep)
            steps = entries(rep, TimelineKind.STEP, actor="codeblue")  # the three samples, then the assessment
            assert [round(e.at_seconds / 60) for e in steps] == [0, 2, 4, 4]
            assert metrics.calls == 3
            for a in rep.actions:
                await service.execute_update(env.client, h.id, HighMemoryPlaybook.decide,
                                      Decision(action_id=a.id, approve=True, by="alice"), "decision")
            await until(h, lambda r: bool(r.actions) and all(a.state == ActionState.EXECUTED for a in r.actions),
                        "every action executed", timeout=10, query=HighMemoryPlaybook.status)
            assert deployment(sb.cluster, NAMESPACE, GATEWAY)["spec"]["replicas"] == 10
            await resolve_memory(env.client, h.id, MemoryResolution(by="alice", keep_scale=keep_scale))
            rep = await h.result()
            replicas = deployment(sb.cluster, NAMESPACE, GATEWAY)["spec"]["replicas"]
            history = await h.fetch_history()
    return rep, replicas, history


async def test_samples_minutes_apart_then_scale_back_on_resolution(skipping_env):
    rep, replicas, history = await _run(skipping_env, keep_scale=False)
    assert set(rep.assessment["leak_suspects"]) == {f"{GATEWAY}-abc-{i}" for i in range(3)}
    states = {a.id: a.state.value for a in rep.actions}
    assert states == {"scale": "compensated", "restart": "executed"}
    assert replicas == 3  # back where it was
    # the IC's resolve request (the one undecided entry by alice) comes before the undo
    asked = [i for i, e in enumerate(rep.timeline) if e.actor == "alice" and e.kind == TimelineKind.EVENT]
    assert len(asked) == 1 and TimelineKind.COMPENSATION in kinds(rep)[asked[0]:]
    assert TimelineKind.COMPENSATION not in kinds(rep)[:asked[0]]
    result = await replayer([HighMemoryPlaybook]).replay_workflow(
        history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_ic_can_keep_the_scale_up(skipping_env):
    rep, replicas, _ = await _run(skipping_env, keep_scale=True)
    assert {a.id: a.state.value for a in rep.actions}["scale"] == "executed"
    assert replicas == 10
    after = kinds_after(rep, TimelineKind.EXECUTED)  # the IC's keep, and nothing undone
    assert TimelineKind.DECISION in after and TimelineKind.COMPENSATION not in kinds(rep)
    assert [e.actor for e in entries(rep, TimelineKind.DECISION)][-1] == "alice"
