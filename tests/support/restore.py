"""Helpers for DatabaseRestoreWorkflow tests (time-skipping server; fakes or real activities)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.config import CodeBlueConfig, MitigationConfig, RestoreConfig
from domain.database_restore import DatabaseRestoreInput
from domain.incident import Decision, IncidentReport
from sandbox.memory_world import configure_worker
from starters import database_restore, service
from tests.support.workflows import terminate
from workflows.database_restore import DatabaseRestoreWorkflow

IC = "alice"


def restore_config(**restore) -> CodeBlueConfig:
    return CodeBlueConfig(
        restore=RestoreConfig(**{"poll_interval_seconds": 60, "poll_window_seconds": 1, **restore}),
        mitigation=MitigationConfig(rollout_timeout_seconds=60),
    )


def restore_input(config: CodeBlueConfig | None = None, **kw) -> DatabaseRestoreInput:
    """`config`: the (fake) worker's config for this incident; the input carries none."""
    iid = kw.pop("incident_id", f"INC-{uuid.uuid4().hex[:8]}")
    configure_worker(iid, config or restore_config())
    return DatabaseRestoreInput(incident_id=iid, requested_by="oncall", commander=kw.pop("commander", IC), **kw)


@asynccontextmanager
async def restore_worker(env: WorkflowEnvironment, activities: list, handles: list) -> AsyncIterator[str]:
    tq = f"tq-db-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=tq, workflows=[DatabaseRestoreWorkflow], activities=activities):
        try:
            yield tq
        finally:
            for h in handles:
                await terminate(h)


async def start(env: WorkflowEnvironment, inp: DatabaseRestoreInput, tq: str, handles: list) -> WorkflowHandle:
    h = await database_restore.start_restore(env.client, inp, tq)
    handles.append(h)
    return h



def proposed(action_id: str) -> Callable[[IncidentReport], bool]:
    return lambda rep: any(a.id == action_id and a.state.value == "proposed" for a in rep.actions)


async def approve(env: WorkflowEnvironment, h: WorkflowHandle, action_id: str) -> None:
    await service.decide(env.client, h.id, Decision(action_id=action_id, approve=True, by=IC))


def events(rep: IncidentReport) -> list[str]:
    return [e.event for e in rep.timeline]
