"""The fault drill's dev-server SIGKILL and restart mid-incident (sandbox.drills.chaos)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypedDict

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from sandbox.drills.chaos_client import ClientGate, HistoryTap
from sandbox.drills.chaos_pool import Fault


class RestartPlan(TypedDict):
    before_decisions: tuple[int, ...]
    on_timer_in: tuple[str, ...]


# when the dev server is restarted: before these IC decisions (0 = the first), and while a
# timer of these workflows is pending
SERVER_RESTARTS: dict[str, RestartPlan] = {
    "bad-deploy": {"before_decisions": (0,), "on_timer_in": ("-postmortem",)},
    "db-outage": {"before_decisions": (0, 1), "on_timer_in": ()},
}


# ====================================================================== dev server restarts
class ServerRestarts:
    """SIGKILLs the persistent dev server and starts it again on the same port and file at
    the moments given: before the IC's Nth decision (the incident waits for the IC), and when
    a workflow's history shows a timer started (a durable timer pending)."""

    def __init__(self, server: Any, client: Client, gate: ClientGate, *, before_decisions: tuple[int, ...],
                 on_timer_in: tuple[str, ...], say: Callable[[str], None]) -> None:
        self.server, self.gate, self.say = server, gate, say
        self.before_decisions = set(before_decisions)
        self.on_timer_in = on_timer_in  # workflow ID suffixes whose first timer triggers a restart
        self.decisions = 0
        self.error: BaseException | None = None
        self.faults: list[Fault] = []
        self.tap = HistoryTap(client, self._on_event)
        self.timers_seen: set[str] = set()
        self.timer_fired_after_restart: dict[str, bool] = {}
        self._timer_ids: dict[str, str] = {}
        self.steps: Counter[str] = Counter()  # activities scheduled, by type
        self.completed: set[str] = set()  # activity types completed at least once
        self._scheduled: dict[tuple[str, int], str] = {}
        self._down_at: dict[str, float] = {}  # wall time the server was killed, per timer restart
        self._lock = asyncio.Lock()
        self._pending: list[asyncio.Task] = []
        gate.on_start = self.tap.watch
        gate.before_call = self._before_call

    async def _before_call(self, kind: str, name: str) -> None:
        if kind == "update" and name in ("decide",):
            self.decisions += 1
            if self.decisions - 1 in self.before_decisions:
                await self.restart(f"before the IC's decision #{self.decisions}")

    def _on_event(self, wf: str, ev: Any) -> None:
        if os.environ.get("CHAOS_DEBUG"):
            self.say(f"  [{time.monotonic():.2f}] event {wf[-12:]} {ev.event_id} {EventType.Name(ev.event_type)} "
                     f"at {ev.event_time.ToDatetime():%H:%M:%S.%f}")
        if ev.HasField("activity_task_scheduled_event_attributes"):
            a = ev.activity_task_scheduled_event_attributes
            self.steps[a.activity_type.name] += 1  # each activity once, however often retried
            self._scheduled[(wf, ev.event_id)] = a.activity_type.name
        if ev.HasField("activity_task_completed_event_attributes"):
            self.completed.add(self._scheduled.get((wf, ev.activity_task_completed_event_attributes.scheduled_event_id), ""))
        if ev.HasField("timer_started_event_attributes"):
            if any(wf.endswith(s) for s in self.on_timer_in) and wf not in self.timers_seen:
                self.timers_seen.add(wf)
                self.timer_fired_after_restart[wf] = False
                self._timer_ids[wf] = ev.timer_started_event_attributes.timer_id
                self._pending.append(asyncio.ensure_future(self.restart(f"while a timer of {wf} is pending", wf)))
        if ev.HasField("timer_fired_event_attributes") and self._timer_ids.get(wf) == ev.timer_fired_event_attributes.timer_id:
            down = self._down_at.get(wf)
            fired = ev.event_time.ToDatetime(tzinfo=UTC).timestamp()
            self.timer_fired_after_restart[wf] = down is not None and fired >= down

    async def restart(self, why: str, timer_of: str | None = None) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            await self.gate.hold(any_call=True)
            t0 = loop.time()
            if timer_of is not None:
                self._down_at[timer_of] = time.time()
            try:
                self.server.kill()
                await self.server.start()
            except BaseException as e:
                self.error = self.error or e  # the IC's next call fails with it, the run reports it
                raise
            finally:
                self.gate.release()
            fault = Fault(len(self.faults) + 1, "server-restart", [why], self.server.proc.pid, round(loop.time() - t0, 3))
            self.faults.append(fault)
            self.say(f"server restart {fault.n}: SIGKILL + start on {self.server.address} {why} ({fault.seconds:.1f} s down)")

    async def aclose(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self.tap.aclose()


