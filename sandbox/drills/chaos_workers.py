"""The fault drill's worker processes, and the SIGKILL of one at every activity boundary (sandbox.drills.chaos)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingActivityState, PendingWorkflowTaskState
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflowservice.v1 import (
    ResetStickyTaskQueueRequest,
    RespondActivityTaskFailedByIdRequest,
)
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from sandbox.drills.chaos_client import ClientGate, HistoryTap
from sandbox.drills.chaos_pool import BOUNDARIES, ActivityRun, Fault, WorkerPool, WorkerProc
from starters.service import CodeBlueError

_STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
_SCHEDULED = PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED


# ====================================================================== worker SIGKILLs
class WorkerChaos:
    """A worker process on the task queue, SIGKILLed at every activity boundary in turn."""

    def __init__(self, client: Client, *, address: str, config_path: str, task_queue: str, log_dir: str,
                 say: Callable[[str], None] = lambda s: None, pool: WorkerPool | None = None,
                 standbys: int = 2) -> None:
        self.client, self.address, self.config_path, self.task_queue = client, address, config_path, task_queue
        self.log_dir, self.say, self.standbys = log_dir, say, standbys
        self.tap = HistoryTap(client, self._on_event)
        self.gate: ClientGate | None = None
        self.workers: dict[int, WorkerProc] = {}
        self.active: WorkerProc | None = None
        self.standby: deque[WorkerProc] = deque()
        self.runs: dict[tuple[str, str], ActivityRun] = {}
        self.scheduled: dict[tuple[str, int], str] = {}  # (workflow, scheduled event id) -> activity id
        self.completed_due: set[tuple[str, str]] = set()
        self.faults: list[Fault] = []
        self.notes: list[str] = []  # anything that did not go to plan (reported, never silent)
        self.changed = asyncio.Event()
        self._forks = 0
        self.cpu_seconds = 0.0  # CHAOS_DEBUG: CPU the killed workers used
        self._forking: list[float] = []  # when each fork not yet connected was asked for
        self._pool, self._own_pool = pool, pool is None
        self._hook = ""
        self._server: asyncio.base_events.Server | None = None
        self._loop_task: asyncio.Task | None = None
        self._stopping = False
        self._error: BaseException | None = None

    # ---------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> WorkerChaos:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self._hook = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        if self._pool is None:
            self._pool = WorkerPool(self.log_dir).start()
        for _ in range(1 + self.standbys):
            self._fork()
        await self._wait(lambda: self.active is not None, "the first worker", 60)
        self._loop_task = asyncio.ensure_future(self._kill_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._loop_task is not None:
            # the flag as well as the cancel: on Python 3.11 a cancel can be lost (below)
            self._stopping = True
            self.changed.set()
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self.tap.aclose()
        for w in self.workers.values():
            if w.state != "dead":
                self._sigkill(w)
        if self._own_pool and self._pool is not None:
            self._pool.close()
        if self._server is not None:
            self._server.close()

    def attach(self, gate: ClientGate) -> None:
        """The IC's client: its starts are watched, its calls held while a worker is killed."""
        self.gate = gate
        gate.on_start = self.tap.watch

    def check(self) -> None:
        if self._error is not None:
            raise CodeBlueError(f"fault drill supervisor failed: {self._error!r}")

    # ---------------------------------------------------------------- worker processes
    def _fork(self) -> None:
        from sandbox.worker_process import worker_env

        assert self._pool is not None
        # the environment now: what the sandbox set (its dummy credentials) reaches the worker
        self._pool.fork(self._hook, worker_env(self.address, self.config_path, self.task_queue))
        self._forks += 1
        self._forking.append(time.monotonic())

    def _refill(self) -> None:
        """A worker that never came up (it crashed, or hung while starting) is replaced."""
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.state == "starting" and now - w.since > 30:
                self.notes.append(f"worker {w.pid} connected but was not ready after 30 s; killed")
                self._sigkill(w)
                self._fork()
        while self._forking and now - self._forking[0] > 30:
            self._forking.pop(0)
            self.notes.append("a worker process never connected within 30 s; forked another")
            self._fork()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        w: WorkerProc | None = None
        try:
            hello = json.loads(await reader.readline())
            w = WorkerProc(pid=int(hello["pid"]), writer=writer)
            if self._forking:
                self._forking.pop(0)
            self.workers[w.pid] = w
            while line := await reader.readline():
                self._on_hook(w, json.loads(line))
        except (ConnectionError, ValueError):
            pass
        finally:
            if w is not None:
                if w.state != "dead":  # it died on its own: a crash the drill did not cause
                    self.notes.append(f"worker {w.pid} exited unasked (see chaos-workers.log)")
                    w.state = "dead"
                    if self.active is w:
                        self.active = None
                        self._promote()
                w.gone.set()
            self.changed.set()

    def _on_hook(self, w: WorkerProc, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "ready":
            if os.environ.get("CHAOS_DEBUG"):
                self.say(f"  [{time.monotonic():.2f}] ready {w.pid}")
            w.ready, w.identity = True, msg.get("identity")
            w.state = "standby"
            self.standby.append(w)
            if self.active is None:
                self._promote()
            self.changed.set()
            return
        if op not in ("start", "end") or w.state != "active":
            return  # a dying worker's last words
        if os.environ.get("CHAOS_DEBUG"):
            self.say(f"  [{time.monotonic():.2f}] {op} {msg['type']} attempt {msg['attempt']} on {w.pid}")
        wf, act = msg["wf"], msg["act"]
        run = self.runs.get((wf, act))
        if run is None:
            run = self.runs[(wf, act)] = ActivityRun(wf, act, msg["type"])
        self.tap.watch(wf)
        run.reporting = None
        if op == "start":
            run.attempts = max(run.attempts, int(msg["attempt"]))
            boundary = "scheduled"
        else:
            run.running = None
            boundary = "started"
        if run.faults[boundary] is None:
            run.parked = (w, boundary, msg["id"])
            self.changed.set()
        else:
            self._answer(run, w, msg["id"], boundary, int(msg["attempt"]))

    def _answer(self, run: ActivityRun, w: WorkerProc, msg_id: int, boundary: str, attempt: int) -> None:
        run.parked = None
        if boundary == "scheduled":
            run.running = w
        else:
            run.reporting = (w, attempt)
        w.send({"id": msg_id})

    def _promote(self) -> None:
        while self.standby and self.active is None:
            w = self.standby.popleft()
            if w.state == "dead":
                continue
            w.state = "active"
            self.active = w
            w.send({"op": "go"})

    def _sigkill(self, w: WorkerProc) -> None:
        w.state = "dead"
        try:
            os.kill(w.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # ---------------------------------------------------------------- history
    def _on_event(self, wf: str, ev: Any) -> None:
        if ev.HasField("activity_task_scheduled_event_attributes"):
            a = ev.activity_task_scheduled_event_attributes
            self.scheduled[(wf, ev.event_id)] = a.activity_id
            self.runs.setdefault((wf, a.activity_id), ActivityRun(wf, a.activity_id, a.activity_type.name))
        for kind in ("completed", "failed", "timed_out", "canceled"):
            attr = f"activity_task_{kind}_event_attributes"
            if ev.HasField(attr):
                act = self.scheduled.get((wf, getattr(ev, attr).scheduled_event_id))
                run = self.runs.get((wf, act)) if act else None
                if run is not None and act is not None:
                    run.closed, run.running, run.reporting, run.parked = True, None, None, None
                    run.completed = kind == "completed"
                    if kind == "completed" and run.faults["completed"] is None:
                        self.completed_due.add((wf, act))
        if os.environ.get("CHAOS_DEBUG"):
            self.say(f"  [{time.monotonic():.2f}] event {wf[-12:]} {ev.event_id} {EventType.Name(ev.event_type)}")
        if ev.HasField("workflow_task_timed_out_event_attributes"):
            self.notes.append(f"{wf}: a workflow task timed out (event {ev.event_id}): a worker died holding it")
        if ev.HasField("workflow_execution_update_accepted_event_attributes") and self.gate is not None:
            self.gate.accepted.add(ev.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id)
        self.changed.set()

    # ---------------------------------------------------------------- the kills
    def _due(self) -> bool:
        return bool(self.completed_due) or any(r.parked for r in self.runs.values())

    async def _kill_loop(self) -> None:
        try:
            while not self._stopping:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the inner result
                # when a cancel lands as the event is set, and the cancel is lost; this loop then
                # ran forever and the drill hung at its end (sessions 8-10)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await self.changed.wait()
                if self._stopping:
                    return
                self.changed.clear()
                self._refill()
                while self._due():
                    self._refill()
                    if not await self._quiescent():
                        await asyncio.sleep(0.01)
                        continue
                    await self._kill()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._error = e
            self.notes.append(f"supervisor failed: {e!r}")
            raise

    async def _describe_open(self) -> dict[str, Any]:
        out = {}
        for wf in self.tap.open_workflows():
            try:
                out[wf] = (await self.client.get_workflow_handle(wf).describe()).raw_description
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise
        return out

    async def _quiescent(self) -> bool:
        """Every attempt on the worker parked at a boundary, a standby ready, no workflow task
        in flight, no client call that needs the worker. Holds the IC's new calls while true."""
        w = self.active
        if w is None or not any(s.state == "standby" for s in self.standby):
            return False
        if any(r.running is w for r in self.runs.values()):
            return False
        descs = await self._describe_open()
        if not self._server_agrees(w, descs):
            return False
        for run in self.runs.values():
            if run.reporting is None:
                continue
            pending = [pa for pa in descs.get(run.wf, _NoDesc).pending_activities if pa.activity_id == run.act]
            worker, attempt = run.reporting
            if not pending or pending[0].attempt > attempt or pending[0].state != _STARTED or worker is not w:
                run.reporting = None  # reported (completed, or failed and waiting for its retry)
            else:
                return False
        if self.gate is not None:
            await self.gate.hold()
        loop = asyncio.get_running_loop()
        end = loop.time() + 20  # a workflow task takes milliseconds, one left on a dead cache 2 s
        while True:
            descs = await self._describe_open()
            if not self._server_agrees(w, descs):  # something reached the worker meanwhile
                if self.gate is not None:
                    self.gate.release()
                return False
            if not any(d.HasField("pending_workflow_task") for d in descs.values()) and self.tap.caught_up(descs):
                if self.gate is None or not self.gate.busy():
                    if os.environ.get("CHAOS_DEBUG") and loop.time() - (end - 20) > 0.2:
                        self.say(f"  waited {loop.time() - (end - 20):.2f} s for workflow tasks / client calls")
                    return True
            if loop.time() > end:
                stuck = [f"{wf} ({PendingWorkflowTaskState.Name(d.pending_workflow_task.state)}, attempt "
                         f"{d.pending_workflow_task.attempt})" for wf, d in descs.items() if d.HasField("pending_workflow_task")]
                self.notes.append(f"killed with a workflow task in flight after 20 s: {', '.join(stuck) or 'a client call'}")
                return True
            await asyncio.sleep(0.01)

    def _server_agrees(self, w: WorkerProc, descs: dict[str, Any]) -> bool:
        """Every attempt the server has given this worker is parked at a boundary, and no
        attempt is about to be given to it (a first attempt or a retry due within a second)."""
        soon = time.time() + 1.0
        for wf, desc in descs.items():
            for pa in desc.pending_activities:
                if pa.state == _STARTED:
                    if pa.last_worker_identity != w.identity:
                        continue  # a dead worker's: reported lost when it was killed
                    run = self.runs.get((wf, pa.activity_id))
                    if run is None or run.parked is None or run.parked[0] is not w:
                        return False  # its code runs, or its start is still on the way to us
                elif pa.state == _SCHEDULED:
                    due = pa.next_attempt_schedule_time.ToDatetime(tzinfo=UTC).timestamp() \
                        if pa.HasField("next_attempt_schedule_time") else 0.0
                    if due < soon:
                        return False
        return True

    async def _kill(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        w = self.active
        assert w is not None
        n = len(self.faults) + 1
        at: list[str] = []
        for key in sorted(self.completed_due):
            run = self.runs[key]
            run.faults["completed"] = n
            at.append(f"completed {run.label}")
        self.completed_due.clear()
        for run in self.runs.values():
            if run.parked is not None and run.parked[0] is w:
                boundary = run.parked[1]
                run.faults[boundary] = n
                run.parked = None
                at.append(f"{boundary} {run.label}")
        dbg = (lambda m: self.say(f"  [{time.monotonic():.2f}] {m}")) if os.environ.get("CHAOS_DEBUG") else (lambda m: None)
        if os.environ.get("CHAOS_DEBUG"):
            with contextlib.suppress(OSError):
                f = open(f"/proc/{w.pid}/stat").read().rsplit(")", 1)[1].split()
                self.cpu_seconds += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        dbg(f"kill {w.pid}")
        self._sigkill(w)
        self.active = None
        for wf in self.tap.open_workflows():  # at once: a timer firing now must not go to the dead cache
            await self._reset_sticky(wf)
        try:
            async with asyncio.timeout(10):  # not wait_for: see _kill_loop
                await w.gone.wait()
            dbg("gone")
        except TimeoutError:
            self.notes.append(f"worker {w.pid} still connected 10 s after SIGKILL")
        # what the server still thinks runs on the dead worker: lost, as a timeout would say
        for wf, desc in (await self._describe_open()).items():
            for pa in desc.pending_activities:
                if pa.state == _STARTED and pa.last_worker_identity == w.identity:
                    started = self.runs.get((wf, pa.activity_id))
                    if started is not None and started.faults["scheduled"] is None:
                        started.faults["scheduled"] = n  # dispatched, its code not yet started
                        at.append(f"scheduled {started.label}")
                    elif started is None or not any(x.endswith(f" {started.label}") for x in at):
                        self.notes.append(f"fault {n}: attempt {pa.attempt} of {pa.activity_type.name} lost "
                                          "outside a boundary")
                    await self._report_lost(wf, desc.workflow_execution_info.execution.run_id, pa, w)
        dbg("reaped")
        self._promote()
        self._fork()
        if self.gate is not None:
            self.gate.release()
        self.faults.append(Fault(n, "worker-sigkill", at, w.pid, round(loop.time() - t0, 3)))
        self.say(f"fault {n}: SIGKILL worker {w.pid} at {'; '.join(at)}" + (f" [{time.monotonic():.2f}]" if os.environ.get("CHAOS_DEBUG") else ""))

    async def _report_lost(self, wf: str, run_id: str, pa: Any, w: WorkerProc) -> None:
        err = ApplicationError(f"fault drill: worker {w.identity} was SIGKILLed during attempt {pa.attempt}",
                               type="WorkerKilled", next_retry_delay=timedelta(milliseconds=1))
        failure = Failure()
        await self.client.data_converter.encode_failure(err, failure)
        req = RespondActivityTaskFailedByIdRequest(
            namespace=self.client.namespace, workflow_id=wf, run_id=run_id, activity_id=pa.activity_id,
            failure=failure, identity="codeblue-fault-drill")
        if pa.HasField("heartbeat_details"):
            req.last_heartbeat_details.CopyFrom(pa.heartbeat_details)
        try:
            await self.client.workflow_service.respond_activity_task_failed_by_id(req)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:  # it finished meanwhile
                raise

    async def _reset_sticky(self, wf: str) -> None:
        """Tell the server the worker that cached this workflow is gone (as a worker's clean
        shutdown would), so its next task goes to the task queue, not to a dead process."""
        try:
            await self.client.workflow_service.reset_sticky_task_queue(ResetStickyTaskQueueRequest(
                namespace=self.client.namespace, execution=WorkflowExecution(workflow_id=wf)))
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise

    # ---------------------------------------------------------------- waiting and reporting
    async def _wait(self, pred: Callable[[], bool], what: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not pred():
            if self._pool is not None and self._pool.proc is not None and self._pool.proc.poll() is not None:
                raise CodeBlueError(f"the worker pool process exited with {self._pool.proc.returncode}: "
                                    f"{self._pool.log_tail()}")
            if loop.time() > end:
                raise CodeBlueError(f"fault drill: timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def settle(self, last_activity: str | None, timeout: float = 90) -> None:
        """Until the watched workflows have done their work: `last_activity` completed (if
        given) and nothing pending on any open workflow."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            self.check()
            done = last_activity is None or any(r.type == last_activity and r.completed for r in self.runs.values())
            if done and not self._due() and not any(r.running or r.reporting or r.parked for r in self.runs.values()):
                descs = await self._describe_open()
                if not any(d.pending_activities or d.HasField("pending_workflow_task") for d in descs.values()):
                    return
            if loop.time() > end:
                raise CodeBlueError(f"fault drill: the workflows did not settle ({last_activity or 'nothing pending'}): "
                                    f"{await self.state()}")
            await asyncio.sleep(0.05)

    async def state(self) -> str:
        """What the supervisor and the server think is going on (for a stuck drill's error)."""
        parts = [f"active={self.active.pid if self.active else None}",
                 f"standbys={[w.pid for w in self.standby if w.state == 'standby']}",
                 f"forks pending={len(self._forking)}", f"faults={len(self.faults)}",
                 f"due completed={sorted(self.completed_due)}",
                 f"parked={[(r.label, r.parked[1]) for r in self.runs.values() if r.parked]}",
                 f"running={[r.label for r in self.runs.values() if r.running]}",
                 f"reporting={[r.label for r in self.runs.values() if r.reporting]}",
                 f"client calls={list(self.gate.calls.values()) if self.gate else []}",
                 f"children starting={sorted(self.tap.children_starting)}"]
        try:
            for wf, d in (await self._describe_open()).items():
                parts.append(f"{wf}: history {d.workflow_execution_info.history_length} (seen {self.tap.seen.get(wf)}), "
                             f"wft={d.HasField('pending_workflow_task')}, activities="
                             + str([(pa.activity_type.name, pa.activity_id, PendingActivityState.Name(pa.state), pa.attempt,
                                     pa.last_worker_identity) for pa in d.pending_activities]))
        except RPCError as e:
            parts.append(f"describe failed: {e}")
        return "; ".join(parts + self.notes[-5:])

    def coverage(self) -> dict[str, Any]:
        """Boundaries faulted vs boundaries there were (an activity that never ran has none)."""
        total = faulted = 0
        missed: list[str] = []
        for run in self.runs.values():
            if run.attempts == 0 and not run.closed:
                continue
            for b in BOUNDARIES:
                if b == "completed" and not run.completed:
                    continue
                total += 1
                if run.faults[b] is not None:
                    faulted += 1
                else:
                    missed.append(f"{b} {run.label}")
        return {"activities": sum(1 for r in self.runs.values() if r.attempts or r.closed),
                "boundaries": total, "boundaries_faulted": faulted, "missed": missed}


class _NoDesc:
    pending_activities: list = []


