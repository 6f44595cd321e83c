"""`codeblue drill --chaos`: the fault drill. A runbook procedure on the sandbox while its worker
is SIGKILLed at every activity boundary, then again while the Temporal server itself is
SIGKILLed and restarted mid-incident; it passes only if every incident completes and every
side effect on the sandbox happened exactly once.

The IC is played by the drill's own drivers (`sandbox.drills.runner.DRIVERS`), so the fault drill
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
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from sandbox.drills.chaos_client import ClientGate
from sandbox.drills.chaos_effects import EXPECTED_EFFECTS, SETTLED_AFTER, Effect
from sandbox.drills.chaos_pool import Fault, WorkerPool
from sandbox.drills.chaos_server import SERVER_RESTARTS, ServerRestarts
from sandbox.drills.chaos_workers import WorkerChaos
from starters.service import CodeBlueError

# The dev server reads its timer queue up to 1 s late; an activity retry is such a timer, and
# the drill retries a hundred of them. Fire them on time (workflow timers too).
TIMELY_TIMERS = ["--dynamic-config-value", 'history.timerProcessorMaxTimeShift="10ms"']
SCENARIOS = ("bad-deploy", "db-outage")
DRIVE_TIMEOUT = 300.0  # one incident, however slow the machine: a stuck drill fails, saying where


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
    from sandbox.drills.kit import DrillContext
    from sandbox.drills.runner import DRIVERS
    from sandbox.effects import WriteLog

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
    from sandbox.drills.kit import DrillContext
    from sandbox.drills.runner import DRIVERS
    from sandbox.effects import WriteLog
    from sandbox.worker_process import spawn_worker, stop

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
    from sandbox.drills.kit import json_stdout

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
