"""A failed-redeploy sandbox (cluster, helm stand-in, receiver) with a worker on the
time-skipping server, for the service recovery tests."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import httpx
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.incident import Decision, IncidentReport
from domain.recovery import RecoveryInput
from starters import service
from starters.recovery import start_recovery
from worker.main import activities_for
from workflows.service_recovery import ServiceRecoveryWorkflow


@dataclass
class RecoveryWorld:
    env: WorkflowEnvironment
    sandbox: object  # sandbox.scenarios.SandboxEnvironment
    task_queue: str

    async def start(self, tag: str | None = None, **kw) -> WorkflowHandle:
        inp = RecoveryInput(
            incident_id=f"INC-{uuid.uuid4().hex[:8]}", requested_by="oncall", commander="alice", target_tag=tag, **kw
        )
        return await start_recovery(self.env.client, inp, self.task_queue)

    async def approve(self, h: WorkflowHandle) -> IncidentReport:
        rep = await until(h, lambda r: bool(r.actions), "the redeploy proposal")
        await service._update(self.env.client, h.id, ServiceRecoveryWorkflow.decide,
                              Decision(action_id="redeploy", approve=True, by="alice"), "decision")
        return rep


@asynccontextmanager
async def recovery_world(env: WorkflowEnvironment, scenario: str = "failed-redeploy") -> AsyncIterator[RecoveryWorld]:
    from sandbox.scenarios import sandbox_environment

    async with sandbox_environment(scenario) as sb, httpx.AsyncClient(timeout=5) as http:
        tq = f"tq-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=tq, workflows=[ServiceRecoveryWorkflow],
                          activities=activities_for(sb.config, http)):
            yield RecoveryWorld(env, sb, tq)


async def until(h: WorkflowHandle, pred: Callable[[IncidentReport], bool], what: str, timeout: float = 60) -> IncidentReport:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        rep: IncidentReport = await h.query(ServiceRecoveryWorkflow.status)
        if pred(rep):
            return rep
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}; timeline: {[e.event for e in rep.timeline]}")
        await asyncio.sleep(0.05)


def events(rep: IncidentReport) -> list[str]:
    return [e.event for e in rep.timeline]
