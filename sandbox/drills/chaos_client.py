"""The fault drill's hold on the IC's client, and the histories it follows (sandbox.drills.chaos)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from temporalio import client as tclient
from temporalio.client import Client
from temporalio.service import RPCError


# ====================================================================== the IC's client
class ClientGate(tclient.Interceptor):
    """Wraps the IC's client: knows which of its calls need a worker (a query, a signal, an
    update until it is accepted, a start) and can hold new calls while the worker is killed or
    the server restarted, as an IC retrying a failed command would wait. `on_start` hears of
    every workflow the IC starts; `before_call(kind, name)` runs first on every call."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._ids = itertools.count(1)
        self.calls: dict[int, tuple[str, str | None]] = {}
        self.accepted: set[str] = set()
        self.on_start: Callable[[str], None] = lambda wf: None
        self.before_call: Callable[[str, str], Awaitable[None]] | None = None

    def intercept_client(self, next: tclient.OutboundInterceptor) -> tclient.OutboundInterceptor:
        return _GatedCalls(next, self)

    @asynccontextmanager
    async def call(self, kind: str, name: str, update_id: str | None = None) -> AsyncIterator[None]:
        if self.before_call is not None:
            await self.before_call(kind, name)
        await self._open.wait()
        n = next(self._ids)
        self.calls[n] = (kind, update_id)
        try:
            yield
        finally:
            del self.calls[n]

    def busy(self, *, any_call: bool = False) -> bool:
        return any(any_call or kind != "update" or uid not in self.accepted for kind, uid in self.calls.values())

    async def hold(self, *, any_call: bool = False, timeout: float = 30) -> None:
        """Close the gate and wait until no call in flight needs the worker (or the server)."""
        self._open.clear()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.busy(any_call=any_call) and loop.time() < end:
            await asyncio.sleep(0.01)

    def release(self) -> None:
        self._open.set()


class _GatedCalls(tclient.OutboundInterceptor):
    def __init__(self, next: tclient.OutboundInterceptor, gate: ClientGate) -> None:
        super().__init__(next)
        self.gate = gate

    async def start_workflow(self, input: tclient.StartWorkflowInput) -> Any:
        async with self.gate.call("start", input.workflow):
            handle = await super().start_workflow(input)
        self.gate.on_start(input.id)
        return handle

    async def query_workflow(self, input: tclient.QueryWorkflowInput) -> Any:
        async with self.gate.call("query", input.query):
            return await super().query_workflow(input)

    async def signal_workflow(self, input: tclient.SignalWorkflowInput) -> None:
        async with self.gate.call("signal", input.signal):
            return await super().signal_workflow(input)

    async def start_workflow_update(self, input: tclient.StartWorkflowUpdateInput) -> Any:
        input.update_id = input.update_id or str(uuid.uuid4())
        async with self.gate.call("update", input.update, input.update_id):
            return await super().start_workflow_update(input)


# ====================================================================== following histories
class HistoryTap:
    """Follows the history of each workflow it is told of (long polls through the client),
    and of the children they start, handing every new event to `on_event`."""

    def __init__(self, client: Client, on_event: Callable[[str, Any], None]) -> None:
        self.client = client
        self.on_event = on_event
        self.tasks: dict[str, asyncio.Task] = {}
        self.closed: set[str] = set()
        self.seen: dict[str, int] = {}  # the last event handed on, per workflow
        self.children_starting: set[str] = set()  # initiated by a parent, not started yet

    def watch(self, workflow_id: str) -> None:
        if workflow_id not in self.tasks:
            self.tasks[workflow_id] = asyncio.ensure_future(self._follow(workflow_id))

    def open_workflows(self) -> list[str]:
        return [wf for wf in self.tasks if wf not in self.closed]

    def caught_up(self, descs: dict[str, Any]) -> bool:
        """Every event the server has (by each description's history length) handed on, and
        no child on its way: nothing has happened that the supervisor has not heard of."""
        if self.children_starting or any(wf not in descs for wf in self.open_workflows()):
            return False
        return all(d.workflow_execution_info.history_length <= self.seen.get(wf, 0)
                   or d.workflow_execution_info.status != 1 for wf, d in descs.items())

    async def _follow(self, wf: str) -> None:
        seen = 0
        while True:
            try:
                async for ev in self.client.get_workflow_handle(wf).fetch_history_events(wait_new_event=True):
                    if ev.event_id <= seen:
                        continue
                    seen = ev.event_id
                    if ev.HasField("start_child_workflow_execution_initiated_event_attributes"):
                        child = ev.start_child_workflow_execution_initiated_event_attributes.workflow_id
                        self.children_starting.add(child)
                        self.watch(child)
                    if ev.HasField("child_workflow_execution_started_event_attributes"):
                        self.children_starting.discard(ev.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id)
                    if ev.HasField("start_child_workflow_execution_failed_event_attributes"):
                        child = ev.start_child_workflow_execution_failed_event_attributes.workflow_id
                        self.children_starting.discard(child)
                        if child in self.tasks and child not in self.seen:  # never ran: nothing to follow
                            self.tasks[child].cancel()
                            self.closed.add(child)
                    self.on_event(wf, ev)
                    self.seen[wf] = seen
                self.closed.add(wf)
                return
            except RPCError:  # not visible yet, or the server is restarting: read it again
                await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        for t in self.tasks.values():
            t.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


