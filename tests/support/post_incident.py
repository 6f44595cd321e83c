"""Helpers for post-incident tests: fakes for its new activities, a worker, a resolved report."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.config import CodeBlueConfig, PostIncidentConfig
from domain.incident import (
    Action,
    ActionKind,
    ActionState,
    IncidentReport,
    Phase,
    SlaClock,
    TimelineEntry,
    TimelineKind,
)
from domain.post_incident import (
    PostIncidentInput,
    postmortem_workflow_id,
)
from domain.severity import Severity
from sandbox.memory_world import PostWorld, World, configure_worker
from tests.support.polling import until
from tests.support.workflows import skip, terminate
from workflows.incident_response import IncidentResponseWorkflow
from workflows.post_incident import PostIncidentWorkflow


def config(**pi) -> CodeBlueConfig:
    defaults = {"health_probes": 2, "probe_interval_seconds": 60}
    defaults.update(pi)
    return CodeBlueConfig(postincident=PostIncidentConfig(**defaults))


def resolved_report(incident_id: str | None = None, severity: str = "P0") -> IncidentReport:
    """A P0 that was rolled back: what IncidentResponseWorkflow's `status` returns at the end."""
    return IncidentReport(
        incident_id=incident_id or f"INC-{uuid.uuid4().hex[:8]}",
        title="api-gateway crash-looping after deploy",
        severity=Severity(severity),
        service="api-gateway",
        status="resolved",
        phase=Phase.RESOLVED,
        commander="alice",
        started_at="2026-11-27T03:00:00+00:00",
        sla=[
            SlaClock(name="diagnostics", due_seconds=300, met=True, done_seconds=2.5),
            SlaClock(name="assessment", due_seconds=900, met=False, done_seconds=None),
        ],
        actions=[
            Action(
                id="rollback", kind=ActionKind.HELM_ROLLBACK, reason="revision 12 deployed 12 min before",
                state=ActionState.EXECUTED, approved_by="alice", decided_by="alice", decided_at_seconds=125.0,
                result="revision 12 -> 11 (new revision 13)", compensation="helm rollback healthcare-platform 12",
            ),
            Action(
                id="scale", kind=ActionKind.SCALE_UP, reason="api-gateway has unavailable replicas",
                state=ActionState.REJECTED, decided_by="bob", decided_at_seconds=130.0,
                rejection_reason="rollback is enough",
            ),
        ],
        timeline=[
            TimelineEntry(at_seconds=0, actor="oncall", event="Incident opened: api-gateway crash-looping after deploy", result="P0",
                          kind=TimelineKind.OPENED),
            TimelineEntry(at_seconds=0, actor="codeblue", event="Severity reason", result="complete service outage",
                          kind=TimelineKind.SEVERITY),
            TimelineEntry(at_seconds=125.0, actor="alice", event="Approved rollback (helm_rollback)", kind=TimelineKind.DECISION),
            TimelineEntry(at_seconds=130.0, actor="bob", event="Rejected scale (scale_up)", result="rollback is enough",
                          kind=TimelineKind.DECISION),
            TimelineEntry(at_seconds=900.0, actor="sla", event="SLA missed: assessment", result="not complete at 15:00",
                          kind=TimelineKind.SLA),
            TimelineEntry(at_seconds=1200.0, actor="alice", event="Incident resolved", result="rolled back to 11",
                          kind=TimelineKind.RESOLVED),
        ],
        summary="rolled back to 11",
        verified=True,
        assessment={
            "user_impact": "health endpoint failing (0/3 OK, last: 503)",
            "affected_services": ["api-gateway"],
            "crash_looping": ["api-gateway-0", "api-gateway-1"],
            "error_rate": 0.4,
            "connection_errors": 40,
            "resource_pressure": ["api-gateway-0 memory at 91% of limit"],
            "recent_deploys": [{"revision": 12, "chart": "healthcare-platform-1.5.0", "minutes_before_incident": 12.0}],
            "current_revision": 12,
            "previous_revision": 11,
        },
    )


def post_input(rep: IncidentReport, cfg: CodeBlueConfig | None = None) -> PostIncidentInput:
    configure_worker(rep.incident_id, cfg or config())  # the (fake) worker's config, never the input's
    return PostIncidentInput(incident_id=rep.incident_id, report=rep, requested_by="alice")


@asynccontextmanager
async def post_worker(env: WorkflowEnvironment, pw: PostWorld, replace: list | None = None) -> AsyncIterator[str]:
    tq = f"pi-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=tq,
        workflows=[PostIncidentWorkflow, IncidentResponseWorkflow],
        activities=pw.activities(replace),
    ):
        try:
            yield tq
        finally:
            for h in pw.world.handles:
                await terminate(h)


async def start_post(
    env: WorkflowEnvironment, pw: PostWorld, tq: str, report: IncidentReport | None = None, cfg: CodeBlueConfig | None = None
) -> WorkflowHandle:
    rep = report or resolved_report()
    h = await env.client.start_workflow(
        PostIncidentWorkflow.run,
        post_input(rep, cfg),
        id=postmortem_workflow_id(rep.incident_id),
        task_queue=tq,
    )
    pw.world.handles.append(h)
    return h


async def skip_hours(env: WorkflowEnvironment, hours: float) -> None:
    """Skip server time an hour at a time (the timers in between fire on the way)."""
    left = hours
    while left > 0:
        step = min(left, 1.0)
        await env.sleep(timedelta(hours=step))
        left -= step


def commander_pages(world: World) -> list[str]:
    return [p.dedup_key.split(":")[-1] for p in world.pages_to("commander")]


def healthy() -> PostWorld:
    pw = PostWorld()
    pw.world.healthy = True
    return pw


async def child_ready(env, h):
    """Past verification (two probes a minute apart) and scheduling."""
    await skip(env, 2)
    return await until(h, lambda p: p.scheduled_slot is not None, "post-mortem scheduled", query=PostIncidentWorkflow.progress)
