"""Worker processes for the fault drill (`codeblue drill --chaos`), each one SIGKILL away from gone.

    python -m sandbox.chaos_worker     # then, per worker, on stdin: {"hook": "HOST:PORT", "env": {...}}
        # env: what `codeblue worker` reads (CODEBLUE_CONFIG, TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE, ...)

This process imports the worker once and then forks one child per line on stdin, so
a new worker is up in a fraction of a second instead of the two seconds a fresh interpreter
takes to import CodeBlue (the drill kills a hundred of them). Each child is a separate
process running what `codeblue worker` runs — `worker.temporal.connect()` and
`worker.main.running_worker()` on the worker's config file — with these additions (the
gate and the hook talk to the drill's supervisor at HOST:PORT):

* a standby gate: the child builds its worker (activities, workflows, identity checks), says
  `ready` and starts polling only when the supervisor says `go`, once it has killed the
  previous worker;
* worker options: its own identity, a short sticky-queue timeout (2 s instead of 10 s), and
  no per-child check that the workflow classes load in the sandbox (this process checked
  them once before forking);
* an activity hook: every attempt reports `start` before its code runs and `end` after it
  has run (its side effects done, its result not yet sent to the server), and waits for the
  supervisor's answer. The supervisor answers, or SIGKILLs the process right there.

The children die with this process (PR_SET_PDEATHSIG), which ends when stdin closes.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import os
import signal
import socket
import sys
import traceback
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

STICKY_SECONDS = 2


class SupervisorLink:
    """One JSON line per message, both ways, over a TCP connection to the supervisor."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.go = asyncio.Event()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, address: str) -> SupervisorLink:
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        link = cls(reader, writer)
        link.send({"op": "hello", "pid": os.getpid()})
        return link

    def send(self, msg: dict[str, Any]) -> None:
        self.writer.write((json.dumps(msg) + "\n").encode())

    async def ask(self, op: str, body: dict[str, Any]) -> None:
        """Tell the supervisor and wait for its answer (which may be SIGKILL instead)."""
        n = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[n] = fut
        self.send({"op": op, "id": n, **body})
        await fut

    async def _read(self) -> None:
        while True:
            line = await self.reader.readline()
            if not line:  # the supervisor is gone: the drill is over
                os._exit(3)
            msg = json.loads(line)
            if msg.get("op") == "go":
                self.go.set()
            elif "id" in msg:
                fut = self._waiting.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(None)


class BoundaryHook(Interceptor):
    def __init__(self, link: SupervisorLink) -> None:
        self.link = link

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HookedActivity(next, self.link)


class _HookedActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, link: SupervisorLink) -> None:
        super().__init__(next)
        self.link = link

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        where = {"wf": info.workflow_id, "run": info.workflow_run_id, "act": info.activity_id,
                 "type": info.activity_type, "attempt": info.attempt}
        await self.link.ask("start", where)
        try:
            result = await self.next.execute_activity(input)
        except BaseException:
            await self.link.ask("end", {**where, "ok": False})
            raise
        await self.link.ask("end", {**where, "ok": True})
        return result


class _Prevalidated(SandboxedWorkflowRunner):
    """The default sandboxed runner, minus the start-up check that each workflow class loads
    in the sandbox: the pool process made that check before forking (`_warm`)."""

    def prepare_workflow(self, defn: Any) -> None:
        if not _VALIDATED:
            super().prepare_workflow(defn)


_VALIDATED = False


def _gated_worker(link: SupervisorLink, identity: str) -> type[Worker]:
    class GatedWorker(Worker):
        def __init__(self, client: Any, **kwargs: Any) -> None:
            kwargs["interceptors"] = [*kwargs.get("interceptors", ()), BoundaryHook(link)]
            kwargs.setdefault("identity", identity)
            # the runner `codeblue worker` runs (worker.temporal.workflow_runner), minus the
            # per-class start-up check that the pool made before forking
            given = kwargs.get("workflow_runner")
            kwargs["workflow_runner"] = _Prevalidated(restrictions=given.restrictions) \
                if isinstance(given, SandboxedWorkflowRunner) else _Prevalidated()
            # how long the server holds a task for this worker's cache before giving it to
            # another worker (default 10 s): this worker is SIGKILLed on purpose, often
            kwargs.setdefault("sticky_queue_schedule_to_start_timeout", timedelta(seconds=STICKY_SECONDS))
            super().__init__(client, **kwargs)

        async def __aenter__(self) -> Worker:
            link.send({"op": "ready", "identity": identity})
            await link.go.wait()
            return await super().__aenter__()

    return GatedWorker


async def _child(address: str) -> None:
    from domain.config import TemporalSettings, load_config
    from worker import main as worker_main
    from worker.temporal import connect

    link = await SupervisorLink.open(address)
    cfg = load_config(None)  # $CODEBLUE_CONFIG, as `codeblue worker`
    settings = TemporalSettings.from_env()
    identity = f"chaos-worker-{os.getpid()}@{socket.gethostname()}"
    worker_main.Worker = _gated_worker(link, identity)  # type: ignore[misc]  # monkeypatched, this process only
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker_main.running_worker(client, cfg, settings.task_queue):
        await stop.wait()


def _warm() -> None:
    """What every worker would compute again on start and may be shared before fork."""
    global _VALIDATED
    from temporalio import workflow

    from worker.main import WORKFLOWS
    from worker.temporal import workflow_runner

    async def validate() -> None:  # what Worker() checks for each workflow, once for all the children
        runner = workflow_runner()  # the children's own (GatedWorker keeps its restrictions)
        for cls in WORKFLOWS:
            runner.prepare_workflow(workflow._Definition.must_from_class(cls))

    asyncio.run(validate())  # a loop of its own, closed before any fork
    _VALIDATED = True

    from worker.versioning import source_commit

    source_commit()  # the build ID's commit (one `git` run), for every child
    # the client libraries the worker's activities load on first use (activities.deferred), and
    # the TLS context its HTTP clients share: each child would otherwise load and build its own
    # (about half of a child's start-up)
    from activities.deferred import import_deferred
    from activities.http_client import tls_context

    import_deferred()
    tls_context()
    try:
        import boto3

        boto3.client("rds", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                     aws_access_key_id="x", aws_secret_access_key="x")  # loads the service model once
    except Exception:  # noqa: BLE001 - only a warm-up; the worker loads it again when needed
        pass


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    """One JSON line per worker wanted: {"hook": "HOST:PORT", "env": {...}} (the child's whole
    environment, as `codeblue worker` would get it)."""
    import domain.config  # noqa: F401
    import worker.main
    import worker.temporal  # noqa: F401
    from worker.heap import settle_heap

    _warm()
    # out of the collector's sight before any fork: a child's full collection walked (and so
    # copied, page by page) the whole inherited heap, about half of each child's start-up CPU
    settle_heap(young_threshold=None)  # as `codeblue worker`
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return
        try:
            order = json.loads(line)
            hook, env = str(order["hook"]), dict(order["env"])
        except (ValueError, KeyError, TypeError):
            print(f"chaos_worker: ignored {line[:80]!r}", file=sys.stderr)
            continue
        if os.fork() == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the worker waits for helm's exit status
            _die_with_parent()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.environ.clear()
            os.environ.update(env)
            code = 0
            try:
                asyncio.run(_child(hook))
            except BaseException:  # noqa: BLE001 - the supervisor sees the connection drop
                traceback.print_exc()
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)


if __name__ == "__main__":
    main()
