"""Helpers for workflow tests on the time-skipping server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.incident import (
    Action,
    BatchDecision,
    DecisionBatch,
    IncidentInput,
    IncidentReport,
    SlaClock,
    TimelineEntry,
    TimelineKind,
)
from domain.severity import Severity
from sandbox.memory_world import World
from starters import service
from tests.support.polling import TRANSIENT, until
from workflows.incident_response import IncidentResponseWorkflow


def incident(severity: str = "P0", commander: str | None = "alice", **kw) -> IncidentInput:
    return IncidentInput(
        incident_id=f"INC-{uuid.uuid4().hex[:8]}",
        title=kw.pop("title", "api-gateway crash-looping after deploy"),
        severity=Severity(severity),
        commander=commander,
        requested_by="oncall",
        **kw,
    )


@asynccontextmanager
async def worker_for(env: WorkflowEnvironment, world: World) -> AsyncIterator[str]:
    """A worker on a fresh task queue; incidents it leaves running are terminated on exit,
    since a stranded activity task would stop the shared server from skipping time."""
    from sandbox.memory_world import PostWorld
    from workflows.post_incident import PostIncidentWorkflow

    tq = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=tq,
        workflows=[IncidentResponseWorkflow, PostIncidentWorkflow],
        activities=PostWorld(world=world).activities(),
    ):
        try:
            yield tq
        finally:
            for h in world.handles:
                await terminate(h)


async def settled(handle: WorkflowHandle) -> bool:
    """Until no activity is pending for ~100 ms (the workflow waits on people or timers); False
    if it closed meanwhile. Before a terminate or a cancel on the time-skipping server: it never
    releases the time lock of an activity task whose workflow was ended under it, and a cancel
    that races an activity's completion fails the workflow task (ACTIVITY_UNKNOWN) there."""
    quiet = 0

    async def running() -> bool:
        nonlocal quiet
        desc = await handle.describe()
        quiet = 0 if desc.raw_description.pending_activities else quiet + 1
        return desc.status == WorkflowExecutionStatus.RUNNING

    try:  # four quiet looks in a row, 25 ms apart
        return await until(running, lambda run: not run or quiet >= 4, "no pending activity", timeout=6, poll=0.025,
                           max_poll=0.025)
    except AssertionError:  # never quiet for long: ended anyway, as before
        return True


async def terminate(handle: WorkflowHandle) -> None:
    if await settled(handle):
        await handle.terminate("test done")


async def skip(env: WorkflowEnvironment, minutes: float) -> None:
    """Skip server time in one-minute steps so each RPC stays short. On a busy machine the
    test server can drop the connection mid-sleep ("h2 protocol error", CANCELLED): the step is
    asked again, as any client would (at worst a minute more is skipped)."""
    left = minutes
    while left > 0:
        step = min(left, 1.0)
        for attempt in range(3):
            try:
                await env.sleep(timedelta(minutes=step))
                break
            except RPCError as e:
                if e.status not in TRANSIENT or attempt == 2:
                    raise
                await asyncio.sleep(0.5)
        left -= step


async def start(env: WorkflowEnvironment, world: World, inp: IncidentInput, tq: str) -> WorkflowHandle:
    h = await service.start_incident(env.client, inp, tq)
    world.handles.append(h)
    return h


def proposed(rep: IncidentReport) -> bool:
    return bool(rep.actions)


def events(rep: IncidentReport) -> list[str]:
    return [e.event for e in rep.timeline]


def kinds(rep: IncidentReport) -> list[TimelineKind]:
    """What happened, in order, by kind: what a test asserts instead of the words."""
    return [e.kind for e in rep.timeline]


def entries(rep: IncidentReport, kind: TimelineKind, actor: str | None = None) -> list[TimelineEntry]:
    """The timeline's entries of one kind (and, if named, by one actor), in order."""
    return [e for e in rep.timeline if e.kind == kind and (actor is None or e.actor == actor)]


def kinds_after(rep: IncidentReport, kind: TimelineKind) -> list[TimelineKind]:
    """The kinds of what happened after the last entry of `kind` ([] if there is none)."""
    k = kinds(rep)
    return k[len(k) - k[::-1].index(kind):] if kind in k else []


def clock(rep: IncidentReport, name: str) -> SlaClock:
    for c in rep.sla:
        if c.name == name:
            return c
    raise AssertionError(f"no SLA clock {name!r} in {[c.name for c in rep.sla]}")


def action(rep: IncidentReport, action_id: str) -> Action:
    for a in rep.actions:
        if a.id == action_id:
            return a
    raise AssertionError(f"no action {action_id!r} in {[a.id for a in rep.actions]}")


def entry(rep: IncidentReport, event: str):
    for e in rep.timeline:
        if e.event == event:
            return e
    raise AssertionError(f"no timeline event {event!r} in {events(rep)}")


async def decide_all(env: WorkflowEnvironment, h: WorkflowHandle, approve: set[str], by: str = "alice",
                     reason: str = "no") -> IncidentReport:
    """The IC decides every proposal in one `decide_many`: the approved ones run in proposal
    order, and no re-check withdraws one of them in between."""
    rep = await until(h, proposed, "proposals")
    batch = DecisionBatch(by=by, decisions=[
        BatchDecision(action_id=a.id, approve=a.id in approve, reason=None if a.id in approve else reason)
        for a in rep.actions])
    await service.decide_many(env.client, h.id, batch)
    return rep
