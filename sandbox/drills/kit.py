"""What every drill driver shares: the drill's IC, its context and outcome, the watcher that
prints a workflow's timeline, and the IC's hands over Temporal. Driver modules
(sandbox/drills/*.py) import this; the registry (sandbox/drills/runner.py) imports them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from domain.incident import Decision, IncidentReport
from starters import service
from starters.render import timeline_line
from starters.service import CodeBlueError

if TYPE_CHECKING:
    from sandbox.scenarios import SandboxEnvironment

IC = "drill-ic"
STEP_TIMEOUT = 90.0


@dataclass
class DrillContext:
    client: Client
    sandbox: SandboxEnvironment
    task_queue: str
    ui: str
    say: Callable[..., None]
    via: str = "temporal"  # how the IC decides: signed Temporal updates, or signed Slack interactions
    interactions: list[dict[str, Any]] = field(default_factory=list)  # --via slack: what was sent

    def new_id(self, prefix: str = "DRILL") -> str:
        return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"

    def link(self, workflow_id: str) -> str:
        return service.ui_link(self.ui, self.client.namespace, workflow_id)


@dataclass
class DrillOutcome:
    report: IncidentReport
    ok: bool
    detail: str
    workflow_id: str


Driver = Callable[[DrillContext], Awaitable[DrillOutcome]]



QUERY_ATTEMPTS = 12
TRANSIENT_RPC = (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE)


class Watcher:
    """Prints a workflow's timeline entries as they appear (through its `status` query)."""

    def __init__(self, handle: WorkflowHandle, say, query) -> None:
        self.handle, self.say, self.query, self.seen = handle, say, query, 0

    async def poll(self) -> IncidentReport:
        # a query that meets a restarting server or a killed worker's sticky queue is asked again
        for attempt in range(QUERY_ATTEMPTS):
            try:
                rep: IncidentReport = await self.handle.query(self.query)
                break
            except RPCError as e:
                if e.status not in TRANSIENT_RPC or attempt == QUERY_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        for entry in rep.timeline[self.seen :]:
            self.say(timeline_line(entry), highlight=False, soft_wrap=True)
        self.seen = len(rep.timeline)
        return rep

    async def until(self, pred, what: str, timeout: float = STEP_TIMEOUT) -> IncidentReport:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            rep = await self.poll()
            if pred(rep):
                return rep
            if loop.time() > end:
                raise CodeBlueError(f"drill: timed out waiting for {what}")
            await asyncio.sleep(0.2)


class TemporalIC:
    """The IC's decisions as signed Temporal updates (`--via temporal`, the default)."""

    def __init__(self, ctx: DrillContext) -> None:
        self.ctx = ctx

    async def approve(self, iid: str, aid: str, reason: str) -> None:
        await service.decide(self.ctx.client, iid, Decision(action_id=aid, approve=True, by=IC, reason=reason))

    async def reject(self, iid: str, aid: str, reason: str) -> None:
        await service.decide(self.ctx.client, iid, Decision(action_id=aid, approve=False, by=IC, reason=reason))

    async def settled(self, iid: str, aid: str) -> None:
        """Nothing to wait for beyond the workflow's own state."""

    def report(self) -> list[dict[str, Any]]:
        return []


@contextmanager
def json_stdout(as_json: bool) -> Iterator[Callable[[str], None]]:
    """With --json, stdout carries the report and nothing else: everything the process or its
    native parts (the SDK core's own log lines) write to fd 1 goes to stderr meanwhile."""
    if not as_json:
        yield print
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        def emit(text: str) -> None:
            os.write(saved, (text + "\n").encode())

        yield emit
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
