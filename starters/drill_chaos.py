"""`codeblue drill --chaos`: the fault drill. A runbook procedure on the sandbox while its worker
is SIGKILLed at every activity boundary, then again while the Temporal server itself is
SIGKILLed and restarted mid-incident; it passes only if every incident completes and every
side effect on the sandbox happened exactly once.

The IC is played by the drill's own drivers (`starters.drill.DRIVERS`), so the fault drill
follows the drill. The faults:

* **Worker SIGKILL at every activity boundary.** The worker runs in a process of its own
  (`sandbox.chaos_worker`: what `codeblue worker` runs, forked from a pre-imported parent
  and reporting each activity attempt to the supervisor here). For every activity of the
  incident, and of any workflow it starts, the worker is killed once at each boundary:
  `scheduled` — the task has reached a worker, none of its code has run; `started` — its
  code has run (the side effect is done), its result has not reached the server;
  `completed` — ActivityTaskCompleted is in the history (followed through the Temporal
  client). Then a new worker process takes over. One kill may serve several boundaries that
  fall at the same moment (an activity's completion and the next one's scheduling), never
  one with code running: the kill waits until every attempt on the worker is parked at a
  boundary, no workflow task is in flight and no client call depends on the worker.
  A killed attempt is what a start-to-close or heartbeat timeout would eventually report
  lost; the supervisor reports it lost at once (RespondActivityTaskFailedById, with its
  last heartbeat details), so the retry runs in milliseconds instead of after 10-120 s.
  Retry policies still apply: no attempt is lost but at these boundaries (at most two per
  activity, within every CodeBlue write policy's three attempts). After each kill the
  workflows' sticky queues are reset (what a worker's clean shutdown tells the server), so
  their next task goes to the new worker at once; the dev server fires timers on time
  (`TIMELY_TIMERS`; it otherwise reads its timer queue up to 1 s late, and each retry is one).
* **Dev server SIGKILL + restart.** `temporal server start-dev --db-filename FILE`, killed
  and started again on the same port and file while the incident is between steps (waiting
  for the IC, a post-mortem timer pending); a `codeblue worker` process and the IC's client
  carry on against the restarted server.

Side effects are counted on the sandbox itself (`sandbox.effects`) against what each
scenario should do exactly once (`EXPECTED_EFFECTS`). The two phases of a scenario run at the
same time, each on its own sandbox and dev server. CHAOS_DEBUG=1 prints every hook message,
history event and kill; CODEBLUE_CHAOS_DIR=DIR keeps the servers' and workers' logs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any, TypedDict

from temporalio import client as tclient
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

from starters.service import CodeBlueError

BOUNDARIES = ("scheduled", "started", "completed")
# The dev server reads its timer queue up to 1 s late; an activity retry is such a timer, and
# the drill retries a hundred of them. Fire them on time (workflow timers too).
TIMELY_TIMERS = ["--dynamic-config-value", 'history.timerProcessorMaxTimeShift="10ms"']
SCENARIOS = ("bad-deploy", "db-outage")
DRIVE_TIMEOUT = 300.0  # one incident, however slow the machine: a stuck drill fails, saying where
_STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
_SCHEDULED = PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED


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


# ====================================================================== worker SIGKILLs
@dataclass
class WorkerProc:
    pid: int
    writer: asyncio.StreamWriter
    identity: str | None = None
    ready: bool = False
    state: str = "starting"  # starting | standby | active | dead
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    since: float = field(default_factory=time.monotonic)

    def send(self, msg: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write((json.dumps(msg) + "\n").encode())


@dataclass
class ActivityRun:
    """One activity of one workflow (all its attempts), and the faults at its boundaries."""

    wf: str
    act: str
    type: str
    faults: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(BOUNDARIES))
    parked: tuple[WorkerProc, str, int] | None = None  # (worker, boundary, message id): waiting for us
    running: WorkerProc | None = None  # its code is running there
    reporting: tuple[WorkerProc, int] | None = None  # (worker, attempt): result on its way to the server
    attempts: int = 0
    closed: bool = False
    completed: bool = False

    @property
    def label(self) -> str:
        return f"{self.type}#{self.act}@{self.wf}"


@dataclass
class Fault:
    n: int
    kind: str  # worker-sigkill | server-restart
    at: list[str]  # "boundary activity" entries, or the moment for a server restart
    pid: int | None = None
    seconds: float = 0.0


class WorkerPool:
    """`python -m sandbox.chaos_worker`: imports CodeBlue once, forks a worker process per order."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerPool:
        with open(Path(self.log_dir) / "chaos-workers.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "sandbox.chaos_worker"], stdin=subprocess.PIPE,
                                         stdout=log, stderr=log)
        return self

    def fork(self, hook: str, env: dict[str, str]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise CodeBlueError(f"the worker pool process exited with {self.proc.returncode}: {self.log_tail()}")
        self.proc.stdin.write((json.dumps({"hook": hook, "env": env}) + "\n").encode())
        self.proc.stdin.flush()

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (Path(self.log_dir) / "chaos-workers.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def close(self) -> None:
        """Its children die with it (PR_SET_PDEATHSIG)."""
        if self.proc is None:
            return
        try:
            assert self.proc.stdin is not None  # spawned with stdin=PIPE
            self.proc.stdin.close()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


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
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 1)
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
            await asyncio.wait_for(w.gone.wait(), 10)
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


# ====================================================================== expected side effects
@dataclass
class Effect:
    what: str
    expected: int
    seen: int

    @property
    def ok(self) -> bool:
        return self.seen == self.expected


def _notification_effects(sb: Any, expected_keys: list[tuple[str, str]], steps: Counter) -> list[Effect]:
    """Each expected (channel, Idempotency-Key) applied once, nothing else; one Slack proposal
    message per `slack_post_proposal` step the workflows ran (none when they post none)."""
    from sandbox.effects import deliveries, slack_posts

    d = deliveries(sb.receiver)
    per_key = d["applied_per_key"]
    out = [Effect(f"{ch} {key}", 1, per_key.get((ch, key), 0)) for ch, key in expected_keys]
    others = sum(n for k, n in per_key.items() if k not in set(expected_keys))
    out.append(Effect("other notifications applied", 0, others))
    posts = slack_posts(sb.receiver)
    out.append(Effect("Slack proposal messages (one per proposal posted)", steps.get("slack_post_proposal", 0),
                      sum(posts.values())))
    out.append(Effect("Slack proposal messages posted twice", 0, sum(n - 1 for n in posts.values() if n > 1)))
    return out


def bad_deploy_effects(sb: Any, log: Any, report: Any, steps: Counter) -> list[Effect]:
    """Rollback of release healthcare-platform 12 -> 11, approved by the IC; scale and restart
    rejected. One incident: one page (and its resolve), one status page incident (opened, resolved), three
    stakeholder messages, the incident channel opened and closed."""
    from sandbox.effects import deployment_changes, helm_revisions
    from sandbox.scenarios import GATEWAY, NAMESPACE, RELEASE

    iid = report.incident_id
    revisions = helm_revisions(sb.cluster, NAMESPACE, RELEASE)
    gw = deployment_changes(log, NAMESPACE, GATEWAY)
    portal = deployment_changes(log, NAMESPACE, "patient-portal")
    return [
        Effect("helm revisions 'Rollback to 11'", 1, sum(1 for r in revisions if r.get("description") == "Rollback to 11")),
        Effect("helm revisions created (seeded 10-12)", 1, len(revisions) - 3),
        Effect("api-gateway image changes (the rollback)", 1, gw["image_changes"]),
        Effect("patient-portal image changes (the rollback)", 1, portal["image_changes"]),
        Effect("api-gateway scale patches", 0, gw["scales"]),
        Effect("api-gateway restart patches", 0, gw["restarts"]),
        Effect("status page incidents", 1, len(sb.receiver.incidents)),
        *_notification_effects(sb, [
            ("pagerduty", f"{iid}:on_call:open"),
            ("pagerduty", f"{iid}:on_call:open:resolve"),  # the page resolved with the incident
            ("statuspage", f"statuspage:{iid}:investigating"),
            ("statuspage", f"statuspage:{iid}:resolved"),
            ("slack", f"{iid}:stakeholders:initial"),
            ("slack", f"{iid}:stakeholders:final"),
            ("slack", f"{iid}:stakeholders:postincident"),
            ("webhook", f"{iid}:channel_open"),
            ("webhook", f"{iid}:channel_close"),
        ], steps),
    ]


def db_outage_effects(sb: Any, log: Any, report: Any, steps: Counter) -> list[Effect]:
    """Restore healthcare-prod-snapshot-latest to healthcare-prod-restored, back up and point
    the database Secret at it, restart api-gateway once; nothing paged or posted."""
    from domain.database_restore import INCIDENT_TAG
    from sandbox.aws_rds_seed import rds_client
    from sandbox.effects import created, deployment_changes, secret_key_changes
    from sandbox.scenario_database_restore import DB_KEY, DB_SECRET
    from sandbox.scenarios import GATEWAY, NAMESPACE

    iid = report.incident_id
    rds = rds_client(sb.extras["aws"])
    instances = rds.describe_db_instances()["DBInstances"]
    ours = [i for i in instances
            if {"Key": INCIDENT_TAG, "Value": iid} in rds.list_tags_for_resource(ResourceName=i["DBInstanceArn"])["TagList"]]
    gw = deployment_changes(log, NAMESPACE, GATEWAY)
    return [
        Effect("RDS instances restored for the incident", 1, len(ours)),
        Effect("RDS instances besides healthcare-prod", 1, sum(1 for i in instances if i["DBInstanceIdentifier"] != "healthcare-prod")),
        Effect("database Secret backups created", 1, len(created(log, "secrets", NAMESPACE, f"{DB_SECRET}-codeblue-backup-"))),
        Effect(f"{DB_SECRET} {DB_KEY} changes (the cutover)", 1, secret_key_changes(log, NAMESPACE, DB_SECRET, DB_KEY)),
        Effect("api-gateway restart patches", 1, gw["restarts"]),
        Effect("api-gateway scale patches", 0, gw["scales"]),
        Effect("api-gateway image changes", 0, gw["image_changes"]),
        *_notification_effects(sb, [], steps),
    ]


EXPECTED_EFFECTS: dict[str, Callable[[Any, Any, Any, Counter], list[Effect]]] = {
    "bad-deploy": bad_deploy_effects,
    "db-outage": db_outage_effects,
}
# the activity after which a scenario's workflows have nothing left to change
SETTLED_AFTER = {"bad-deploy": "schedule_postmortem", "db-outage": None}


class RestartPlan(TypedDict):
    before_decisions: tuple[int, ...]
    on_timer_in: tuple[str, ...]


# when the dev server is restarted: before these IC decisions (0 = the first), and while a
# timer of these workflows is pending
SERVER_RESTARTS: dict[str, RestartPlan] = {
    "bad-deploy": {"before_decisions": (0,), "on_timer_in": ("-postmortem",)},
    "db-outage": {"before_decisions": (0, 1), "on_timer_in": ()},
}


# ====================================================================== one run
@dataclass
class RunResult:
    scenario: str
    fault: str  # worker-sigkill | server-restart
    workflow_id: str
    completed: bool
    detail: str
    effects: list[Effect]
    faults: list[Fault]
    coverage: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def effects_ok(self) -> bool:
        return all(e.ok for e in self.effects)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "fault": self.fault, "workflow_id": self.workflow_id,
            "completed": self.completed, "detail": self.detail, "seconds": self.seconds,
            "faults": len(self.faults), "coverage": self.coverage, "notes": self.notes,
            "effects": [{"what": e.what, "expected": e.expected, "seen": e.seen} for e in self.effects],
            "fault_log": [{"n": f.n, "kind": f.kind, "at": f.at, "pid": f.pid, "seconds": f.seconds} for f in self.faults],
        }


async def _completed(client: Client, scenario: str, outcome: Any) -> tuple[bool, str]:
    """Resolved (or restored) and verified; for an incident, its post-mortem started."""
    rep = outcome.report
    if scenario == "db-outage":
        return outcome.ok, outcome.detail
    pm = rep.postmortem_workflow_id
    started = False
    if pm:
        try:
            await client.get_workflow_handle(pm).describe()
            started = True
        except RPCError:
            started = False
    return outcome.ok and started, f"{outcome.detail}, post-mortem {pm if started else 'not started'}"


def _ic_signer() -> Any:
    from domain.identity import ENV_KEY, keyring_from_env, new_key
    from worker.identity import IdentityInterceptor

    os.environ.setdefault(ENV_KEY, new_key())
    return IdentityInterceptor(keyring_from_env(), via="", roles=["commander", "admin"])


def _sandbox(scenario: str, sb: Any) -> Any:
    """The sandbox given (two at once must be opened and closed in order: kmock patches the
    process's DNS resolver chain), else a new one."""
    from sandbox.scenarios import sandbox_environment

    return contextlib.nullcontext(sb) if sb is not None else sandbox_environment(scenario)


async def run_worker_kills(server: Any, scenario: str, *, work_dir: str, say: Callable[[str], None],
                           progress: Callable[[str], None] | None = None, pool: WorkerPool | None = None,
                           sandbox: Any = None) -> RunResult:
    """One incident of `scenario`, its worker SIGKILLed at every activity boundary."""
    from sandbox.effects import WriteLog
    from starters.drill import DRIVERS
    from starters.drill_kit import DrillContext

    t0 = time.monotonic()
    tq = f"codeblue-chaos-{uuid.uuid4().hex[:6]}"
    gate = ClientGate()
    signer = _ic_signer()
    async with _sandbox(scenario, sandbox) as sb:
        log = WriteLog.attach(sb.cluster)
        ic = await server.client(interceptors=[gate, signer])
        plain = await server.client(interceptors=[signer])
        async with WorkerChaos(plain, address=server.address, config_path=sb.config_path, task_queue=tq,
                               log_dir=work_dir, say=progress or say, pool=pool) as chaos:
            chaos.attach(gate)
            ctx = DrillContext(client=ic, sandbox=sb, task_queue=tq, ui=server.ui, say=lambda *a, **k: None)
            drive = asyncio.ensure_future(DRIVERS[sb.scenario.driver](ctx))
            end = time.monotonic() + DRIVE_TIMEOUT
            while not drive.done():  # the driver plays the IC; the supervisor must not fail meanwhile
                await asyncio.wait([drive], timeout=0.5)
                if chaos._error is not None:
                    drive.cancel()
                    chaos.check()
                if time.monotonic() > end:
                    drive.cancel()
                    raise CodeBlueError(f"fault drill: {scenario} did not finish within {DRIVE_TIMEOUT:g} s: "
                                        f"{await chaos.state()}")
            outcome = drive.result()
            await chaos.settle(SETTLED_AFTER[scenario])
            completed, detail = await _completed(plain, scenario, outcome)
            steps = Counter(r.type for r in chaos.runs.values())
            effects = EXPECTED_EFFECTS[scenario](sb, log, outcome.report, steps)
            if os.environ.get("CHAOS_DEBUG"):
                say(f"  CPU of the killed workers: {chaos.cpu_seconds:.1f} s over {len(chaos.faults)} kills")
            return RunResult(scenario, "worker-sigkill", outcome.workflow_id, completed, detail, effects,
                             list(chaos.faults), chaos.coverage(), list(chaos.notes), round(time.monotonic() - t0, 1))


async def run_server_restarts(server: Any, scenario: str, *, work_dir: str, say: Callable[[str], None],
                              sandbox: Any = None) -> RunResult:
    """One incident of `scenario` on a `codeblue worker` process while the dev server is
    SIGKILLed and restarted on the same port and database file mid-incident."""
    from sandbox.effects import WriteLog
    from sandbox.worker_process import spawn_worker, stop
    from starters.drill import DRIVERS
    from starters.drill_kit import DrillContext

    t0 = time.monotonic()
    tq = f"codeblue-restart-{uuid.uuid4().hex[:6]}"
    gate = ClientGate()
    signer = _ic_signer()
    async with _sandbox(scenario, sandbox) as sb:
        log = WriteLog.attach(sb.cluster)
        ic = await server.client(interceptors=[gate, signer])
        plain = await server.client(interceptors=[signer])
        restarts = ServerRestarts(server, plain, gate, say=say, **SERVER_RESTARTS[scenario])
        worker = spawn_worker(server.address, sb.config_path, tq)
        try:
            ctx = DrillContext(client=ic, sandbox=sb, task_queue=tq, ui=server.ui, say=lambda *a, **k: None)
            drive = asyncio.ensure_future(DRIVERS[sb.scenario.driver](ctx))
            end = time.monotonic() + DRIVE_TIMEOUT
            while not drive.done():
                await asyncio.wait([drive], timeout=0.5)
                if restarts.error is not None or time.monotonic() > end:
                    drive.cancel()
                    raise CodeBlueError(f"fault drill: {scenario} with server restarts "
                                        + (f"failed: {restarts.error!r}" if restarts.error else
                                           f"did not finish within {DRIVE_TIMEOUT:g} s ({len(restarts.faults)} restarts)"))
            outcome = drive.result()
            await _settle_plain(plain, outcome.workflow_id, SETTLED_AFTER[scenario], restarts)
            completed, detail = await _completed(plain, scenario, outcome)
            notes = [f"{wf}: its timer fired after the restart" if fired else f"{wf}: its timer did not fire after the restart"
                     for wf, fired in restarts.timer_fired_after_restart.items()]
            completed = completed and all(restarts.timer_fired_after_restart.values())
            effects = EXPECTED_EFFECTS[scenario](sb, log, outcome.report, restarts.steps)
            return RunResult(scenario, "server-restart", outcome.workflow_id, completed, detail, effects,
                             list(restarts.faults), {}, notes, round(time.monotonic() - t0, 1))
        finally:
            await restarts.aclose()
            await asyncio.to_thread(stop, worker)


async def _settle_plain(client: Client, workflow_id: str, last_activity: str | None, restarts: ServerRestarts,
                        timeout: float = 90) -> None:
    """Until `last_activity` completed in one of the watched histories and nothing is pending."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    restarts.tap.watch(workflow_id)
    while True:
        await asyncio.gather(*restarts._pending, return_exceptions=True)
        busy = last_activity is not None and last_activity not in restarts.completed
        if not busy:
            for wf in restarts.tap.open_workflows():
                try:
                    desc = (await client.get_workflow_handle(wf).describe()).raw_description
                    busy = busy or bool(desc.pending_activities) or desc.HasField("pending_workflow_task")
                except RPCError:
                    busy = True
        if not busy:
            return
        if loop.time() > end:
            raise CodeBlueError(f"fault drill: the workflows did not settle ({last_activity})")
        await asyncio.sleep(0.1)


# ====================================================================== the whole drill
@dataclass
class FaultDrillReport:
    runs: list[RunResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.completed and r.effects_ok for r in self.runs)

    def counts(self) -> dict[str, Any]:
        kills = sum(len(r.faults) for r in self.runs if r.fault == "worker-sigkill")
        restarts = sum(len(r.faults) for r in self.runs if r.fault == "server-restart")
        boundaries = sum(r.coverage.get("boundaries_faulted", 0) for r in self.runs)
        total_boundaries = sum(r.coverage.get("boundaries", 0) for r in self.runs)
        effects = [e for r in self.runs for e in r.effects]
        return {
            "faults_injected": {"total": kills + restarts, "worker_sigkills": kills, "server_restarts": restarts,
                                "activity_boundaries_faulted": boundaries, "activity_boundaries": total_boundaries},
            "incidents_completed": {"completed": sum(r.completed for r in self.runs), "total": len(self.runs)},
            "side_effects": {"seen": sum(e.seen for e in effects), "expected": sum(e.expected for e in effects),
                             "mismatched": [f"{r.scenario}/{r.fault}: {e.what}: seen {e.seen}, expected {e.expected}"
                                            for r in self.runs for e in r.effects if not e.ok]},
        }

    def lines(self) -> list[str]:
        c = self.counts()
        f, i, s = c["faults_injected"], c["incidents_completed"], c["side_effects"]
        return [
            f"faults injected: {f['total']} ({f['worker_sigkills']} worker SIGKILLs at "
            f"{f['activity_boundaries_faulted']}/{f['activity_boundaries']} activity boundaries, "
            f"{f['server_restarts']} dev server SIGKILL+restarts)",
            f"incidents completed: {i['completed']}/{i['total']}",
            f"side effects seen vs expected: {s['seen']}/{s['expected']}"
            + (f" — MISMATCH: {'; '.join(s['mismatched'])}" if s["mismatched"] else " (each exactly once)"),
        ]

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "seconds": self.seconds, **self.counts(), "runs": [r.as_json() for r in self.runs]}


async def fault_drill(scenarios: list[str] | None = None, *, say: Callable[[str], None] = lambda s: None,
                      progress: Callable[[str], None] | None = None, restarts: bool = True,
                      kills: bool = True) -> FaultDrillReport:
    """Each scenario twice: its worker SIGKILLed at every activity boundary (on one dev
    server) and, at the same time, its dev server SIGKILLed and restarted (on another, so
    the one fault never lands on the other's run)."""
    names = scenarios or list(SCENARIOS)
    for name in names:
        if name not in EXPECTED_EFFECTS:
            raise CodeBlueError(f"the fault drill knows the side effects of {', '.join(SCENARIOS)}; not of {name!r}")
    t0 = time.monotonic()
    runs: list[RunResult] = []
    keep = os.environ.get("CODEBLUE_CHAOS_DIR")  # keep the servers' and workers' logs there
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="codeblue-chaos-")) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        async with fault_drill_servers(tmp, kills=kills, restarts=restarts) as (pool, kill_server, restart_server):
            for s in (kill_server, restart_server):
                if s is not None:
                    say(f"Temporal dev server on {s.address} (database {s.db_file}), UI {s.ui}")
            for name in names:
                runs += await both_phases(name, kill_server, restart_server, work_dir=tmp, say=say, progress=progress,
                                          pool=pool)
    return FaultDrillReport(runs, round(time.monotonic() - t0, 1))


async def both_phases(name: str, kill_server: Any, restart_server: Any, *, work_dir: str, say: Callable[[str], None],
                      progress: Callable[[str], None] | None = None, pool: WorkerPool | None = None) -> list[RunResult]:
    """The worker kills and the server restarts of one scenario at the same time, each on its
    own sandbox and dev server (a server given as None skips that phase)."""
    from sandbox.scenarios import sandbox_environment

    async with AsyncExitStack() as stack:
        phases = []
        if kill_server is not None:
            say(f"{name}: SIGKILL the worker at every activity boundary")
            sb = await stack.enter_async_context(sandbox_environment(name))
            phases.append(run_worker_kills(kill_server, name, work_dir=work_dir, say=say, progress=progress, pool=pool,
                                           sandbox=sb))
        if restart_server is not None:
            say(f"{name}: SIGKILL and restart the dev server mid-incident")
            sb = await stack.enter_async_context(sandbox_environment(name))
            phases.append(run_server_restarts(restart_server, name, work_dir=work_dir, say=say, sandbox=sb))
        runs = list(await asyncio.gather(*phases))
    for r in runs:
        say(_summary(r))
    return runs


@asynccontextmanager
async def fault_drill_servers(work_dir: str, *, kills: bool = True, restarts: bool = True) -> AsyncIterator[tuple]:
    """(worker pool, dev server for the worker kills, dev server for the restarts), each with
    its database file in `work_dir`; None for a phase not asked for."""
    from starters.devserver import PersistentDevServer

    pool = WorkerPool(work_dir).start() if kills else None  # imports CodeBlue while the servers start
    try:
        async with AsyncExitStack() as stack:
            servers = []
            for wanted, name in ((kills, "kills"), (restarts, "restarts")):
                servers.append(await stack.enter_async_context(PersistentDevServer(
                    Path(work_dir) / f"temporal-{name}.db", log_file=Path(work_dir) / f"temporal-{name}.log",
                    extra_args=TIMELY_TIMERS)) if wanted else None)
            yield pool, servers[0], servers[1]
    finally:
        if pool is not None:
            pool.close()


def _summary(r: RunResult) -> str:
    bad = [e for e in r.effects if not e.ok]
    cov = r.coverage
    where = f" at {cov['boundaries_faulted']}/{cov['boundaries']} boundaries of {cov['activities']} activities" if cov else ""
    return (f"  {r.scenario} ({r.fault}): {'completed' if r.completed else 'NOT COMPLETED'} — {r.detail}; "
            f"{len(r.faults)} faults{where}; side effects "
            + ("all exactly once" if not bad else "; ".join(f"{e.what}: {e.seen} (expected {e.expected})" for e in bad))
            + f"; {r.seconds:.1f} s" + (f"; notes: {'; '.join(r.notes)}" if r.notes else ""))


async def chaos_drill(scenarios: list[str] | None, *, as_json: bool, out: Any, err: Any) -> int:
    """The CLI's `codeblue drill [SCENARIO] --chaos [--json]`."""
    from starters.drill_kit import json_stdout

    with json_stdout(as_json) as emit:
        say = (lambda s: err.print(s, highlight=False, soft_wrap=True)) if as_json else (
            lambda s: out.print(s, highlight=False, soft_wrap=True))
        report = await fault_drill(scenarios, say=say, progress=lambda s: None)
        if as_json:
            emit(json.dumps(report.as_json(), indent=2))
        for line in report.lines():
            say(line)
        say(("[bold green]FAULT DRILL PASSED[/]" if report.ok else "[bold red]FAULT DRILL FAILED[/]") + f" in {report.seconds:.0f} s")
    return 0 if report.ok else 1
