"""A failed-redeploy sandbox (cluster, helm stand-in, receiver) with a worker on the
time-skipping server, for the service recovery tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.http_client import tls_context
from domain.incident import Decision, IncidentReport
from domain.prometheus import SliQuery, SliReport, SliValue, holds
from domain.service_recovery import RecoveryInput
from starters import service
from starters.service_recovery import start_recovery
from tests.support.polling import until
from worker.main import activities_for
from workflows.blast_radius import BlastRadiusGuard
from workflows.service_recovery import ServiceRecoveryWorkflow

if TYPE_CHECKING:
    from sandbox.scenarios import SandboxEnvironment


@dataclass
class RecoveryWorld:
    env: WorkflowEnvironment
    sandbox: SandboxEnvironment
    task_queue: str

    async def start(self, tag: str | None = None, **kw) -> WorkflowHandle:
        inp = RecoveryInput(
            incident_id=f"INC-{uuid.uuid4().hex[:8]}", requested_by="oncall", commander="alice", target_tag=tag, **kw
        )
        return await start_recovery(self.env.client, inp, self.task_queue)

    async def approve(self, h: WorkflowHandle) -> IncidentReport:
        rep = await until(h, lambda r: bool(r.actions), "the redeploy proposal", timeout=60, query=ServiceRecoveryWorkflow.status)
        await service.execute_update(self.env.client, h.id, ServiceRecoveryWorkflow.decide,
                              Decision(action_id="redeploy", approve=True, by="alice"), "decision")
        return rep


def scripted_slis(values: Callable[[Any], dict[str, float]]):
    """`sli_values` answering `values(sandbox)` for the configured SLIs: metrics that follow the
    sandbox's state without a real Prometheus (a time-skipping server gives it no time to scrape)."""
    def make(sb: Any):
        @activity.defn(name="sli_values")
        async def sli_values(q: SliQuery) -> SliReport:
            now = values(sb)
            out = []
            for s in sb.config.prometheus.slis:
                v = now.get(s.name)
                out.append(SliValue(name=s.name, query=s.query, value=v, threshold=s.threshold, comparison=s.comparison,
                                    unit=s.unit, ok=None if v is None else holds(v, s.comparison, s.threshold)))
            return SliReport(detail=f"{len(out)} SLIs read", at=q.at, values=out)
        return sli_values
    return make


@asynccontextmanager
async def recovery_world(env: WorkflowEnvironment, scenario: str = "failed-redeploy",
                         slis: Callable[[Any], Any] | None = None) -> AsyncIterator[RecoveryWorld]:
    from sandbox.scenarios import sandbox_environment

    async with sandbox_environment(scenario, prometheus=False if slis else None) as sb, \
            httpx.AsyncClient(verify=tls_context(), timeout=5) as http:
        tq = f"tq-{uuid.uuid4().hex[:8]}"
        if slis is not None:  # the worker's config says Prometheus is there; the scripted activity answers
            sb.config.prometheus.url = sb.config.prometheus.url or "http://prometheus.invalid:9090"
        acts = activities_for(sb.config, http)
        if slis is not None:
            acts = [a for a in acts if getattr(a, "__name__", "") != "sli_values"] + [slis(sb)]
        async with Worker(env.client, task_queue=tq, workflows=[ServiceRecoveryWorkflow, BlastRadiusGuard], activities=acts):
            yield RecoveryWorld(env, sb, tq)



def events(rep: IncidentReport) -> list[str]:
    return [e.event for e in rep.timeline]
