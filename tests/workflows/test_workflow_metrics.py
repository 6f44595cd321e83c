"""CodeBlue's metrics change nothing in a workflow's history (committed histories replay with
the interceptor installed), and they count each event as it happens, not at the close."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.runtime import BufferedMetricUpdate, MetricBuffer, Runtime, TelemetryConfig
from temporalio.worker import Replayer, Worker

from domain.incident import ActionState, Decision, TimelineKind
from sandbox.memory_world import PostWorld, World
from starters import service
from tests.support.histories import RELEASE, committed_history
from tests.support.identity import signing_interceptors
from tests.support.paths import HISTORIES
from tests.support.polling import until
from tests.support.workflows import clock, entries, incident, proposed, skip, start, terminate
from worker.temporal import data_converter
from workflows.incident_response import IncidentResponseWorkflow
from workflows.metrics import MetricsInterceptor
from workflows.post_incident import PostIncidentWorkflow
from workflows.registry import WORKFLOWS


@pytest.mark.parametrize("path", sorted((HISTORIES / RELEASE).glob("IncidentResponseWorkflow-*.json")), ids=lambda p: p.stem)
async def test_committed_histories_replay_with_the_metrics_interceptor(path):
    history = committed_history(path)
    replayer = Replayer(workflows=WORKFLOWS, interceptors=[MetricsInterceptor(), *signing_interceptors()],
                        data_converter=data_converter())
    await replayer.replay_workflow(history)


def _count(updates: Sequence[BufferedMetricUpdate], name: str, **labels: str) -> float:
    return sum(u.value for u in updates if u.metric.name == name
               and all(u.attributes.get(k) == v for k, v in labels.items()))


async def test_sla_miss_decisions_and_mitigations_count_as_they_happen(skipping_env):
    """A dashboard sees the 5:00 miss at 5:00, while the incident is still open."""
    buffer = MetricBuffer(10_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    client = await Client.connect(skipping_env.client.service_client.config.target_host,
                                  namespace=skipping_env.client.namespace, runtime=runtime,
                                  data_converter=data_converter(), interceptors=signing_interceptors())
    world = World(failing={"pod_status"})  # diagnostics hang past 5:00
    tq = f"tq-{uuid.uuid4().hex[:8]}"
    seen: list = []
    async with Worker(client, task_queue=tq, workflows=[IncidentResponseWorkflow, PostIncidentWorkflow],
                      activities=PostWorld(world=world).activities()):
        h = await start(skipping_env, world, incident(), tq)
        assert _count(buffer.retrieve_updates(), "codeblue_sla") == 0
        await skip(skipping_env, 5.5)
        await until(h, lambda r: clock(r, "diagnostics").met is False and bool(entries(r, TimelineKind.SLA)),
                    "diagnostics SLA miss")
        seen += buffer.retrieve_updates()
        assert _count(seen, "codeblue_sla", clock="diagnostics", outcome="missed") == 1
        assert _count(seen, "codeblue_mitigations") == 0
        world.failing.clear()
        rep = await until(h, proposed, "proposals")
        for a in rep.actions:
            ok = a.id == "rollback"
            await service.decide(skipping_env.client, h.id, Decision(action_id=a.id, approve=ok, by="alice",
                                                                      reason=None if ok else "not now"))
        await until(h, lambda r: r.actions[0].state == ActionState.EXECUTED, "rollback executed")
        seen += buffer.retrieve_updates()
        assert _count(seen, "codeblue_mitigations", kind="helm_rollback", outcome="executed") == 1
        waits = [u for u in seen if u.metric.name == "codeblue_approval_wait_seconds"]
        assert {u.attributes["decision"] for u in waits} == {"approved", "rejected"}
        assert (await h.describe()).status == WorkflowExecutionStatus.RUNNING  # all of it before the close
        await terminate(h)
