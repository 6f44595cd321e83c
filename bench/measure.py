"""The figures `bench.run` measures, one coroutine each, and `run_figures`: the selected ones
in order, on the embedded dev server (started only when one of them needs it) and, for time to
diagnostics, the drill sandbox. Numbers, not pass/fail: nothing here is a test.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from bench.alert_storm import run_alert_storm
from bench.baseline import BaselineWorkflow, noop
from bench.figures import Figure, dev_server_pid, pct, rss_mb, without_hourly_limits
from bench.incidents import open_incidents, p0, terminate_all, wait_for
from domain.identity import ENV_KEY, keyring_from_env, new_key
from domain.incident import Decision, IncidentReport
from domain.severity import Severity
from sandbox.memory_world import World, incident_worker
from starters import service
from starters.devserver import dev_server
from worker.identity import IdentityInterceptor
from worker.temporal import workflow_runner
from workflows.incident_response import IncidentResponseWorkflow


async def time_to_diagnostics(client: Client, n: int) -> Figure:
    from sandbox.scenarios import sandbox_environment
    from worker.main import running_worker

    samples = []
    tq = f"bench-diag-{uuid.uuid4().hex[:6]}"
    async with sandbox_environment("bad-deploy") as sb, running_worker(client, sb.config, tq):
        for _ in range(n):
            inp = p0()
            t0 = time.perf_counter()
            await service.start_incident(client, inp, tq)
            await wait_for(client, inp.incident_id, lambda r: any(e.event == "Immediate actions complete" for e in r.timeline))
            samples.append(time.perf_counter() - t0)
            # let it reach the IC's decision (no activity in flight) before closing it
            await wait_for(client, inp.incident_id, lambda r: bool(r.actions))
            await client.get_workflow_handle(inp.incident_id).terminate("bench")
    med = statistics.median(samples)
    return Figure("diagnostics", "time to diagnostics (median)", med, "s", "<= 1 s", med <= 1.0, {"p95_s": pct(samples, 95), "n": n})


# 2 ------------------------------------------------------------------ orchestration overhead
async def orchestration_overhead(client: Client, n: int) -> Figure:
    world = without_hourly_limits(World())
    tq = f"bench-ovh-{uuid.uuid4().hex[:6]}"
    codeblue, baseline = [], []
    opts = incident_worker(world)  # resolving starts the post-incident child: register it
    # the baseline is no CodeBlue workflow: its own worker, from a client without CodeBlue's
    # identity interceptor (which refuses any start that is not a CodeBlue input)
    plain = await Client.connect(client.service_client.config.target_host, namespace=client.namespace)
    base_tq = tq + "-base"
    async with Worker(client, task_queue=tq, workflows=opts["workflows"], activities=opts["activities"]), \
            Worker(plain, task_queue=base_tq, workflows=[BaselineWorkflow], activities=[noop]):
        for _ in range(n):
            world.healthy, world.revision = False, 12  # the same bad release each round
            inp = p0()
            t0 = time.perf_counter()
            await service.start_incident(client, inp, tq)
            rep = await wait_for(client, inp.incident_id, lambda r: bool(r.actions))
            for a in rep.actions:
                ok = a.id == "rollback"
                await service.decide(client, inp.incident_id, Decision(action_id=a.id, approve=ok, by="ic", reason=None if ok else "bench"))
            await wait_for(client, inp.incident_id, lambda r: r.actions[0].state.value == "executed")
            from domain.incident import Resolution

            res = await service.resolve(client, inp.incident_id, Resolution(by="ic", summary="bench"))
            if not res.resolved:
                raise RuntimeError(f"bench incident did not resolve: {res.message}")
            await client.get_workflow_handle(inp.incident_id).result()
            codeblue.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            h = await plain.start_workflow(BaselineWorkflow.run, 0, id=f"BASE-{uuid.uuid4().hex[:8]}", task_queue=base_tq)
            await asyncio.sleep(0)
            await h.signal(BaselineWorkflow.proceed)
            await h.result()
            baseline.append(time.perf_counter() - t0)
    ratio = statistics.median(codeblue) / statistics.median(baseline)
    return Figure(
        "overhead", "orchestration overhead", ratio, "x", "<= 1.5", ratio <= 1.5,
        {"codeblue_median_s": statistics.median(codeblue), "baseline_median_s": statistics.median(baseline), "n": n},
    )


# 3, 4 --------------------------------------------------------- approval latency, capacity
class StampedWorld(World):
    """Records when each incident's rollback activity starts."""

    def __init__(self) -> None:
        super().__init__()
        self.rollback_started: dict[str, float] = {}

    def activities(self) -> list:
        acts = super().activities()
        stamped = self

        @activity.defn(name="helm_rollback")
        async def helm_rollback(req):  # unannotated: the worker hands over the request as sent (a dict)
            from domain.cluster import HelmRollbackRequest, HelmRollbackResult

            workflow_id = activity.info().workflow_id
            assert workflow_id is not None  # run by a workflow
            stamped.rollback_started[workflow_id] = time.perf_counter()
            r = HelmRollbackRequest.model_validate(req) if isinstance(req, dict) else req
            return HelmRollbackResult(release=r.release, from_revision=r.from_revision, to_revision=r.to_revision, new_revision=r.from_revision + 1)

        return [a for a in acts if getattr(a, "__temporal_activity_definition").name != "helm_rollback"] + [helm_rollback]


async def approval_latency(client: Client, open_n: int, samples: int, cache: int = 2000) -> Figure:
    from domain.cluster import HelmRollbackRequest  # noqa: F401 - warm import outside timing

    world = without_hourly_limits(StampedWorld())
    tq = f"bench-appr-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=tq, workflows=[IncidentResponseWorkflow], activities=world.activities(),
                      max_cached_workflows=cache, workflow_runner=workflow_runner()):
        ids = await open_incidents(client, tq, open_n)
        lat = []
        for wid in ids[:samples]:
            rep = await client.get_workflow_handle(wid).query(IncidentResponseWorkflow.status)
            for a in rep.actions[1:]:
                await service.decide(client, wid, Decision(action_id=a.id, approve=False, by="ic", reason="bench"))
            t0 = time.perf_counter()
            await service.decide(client, wid, Decision(action_id="rollback", approve=True, by="ic"))
            while wid not in world.rollback_started:
                await asyncio.sleep(0.001)
            lat.append((world.rollback_started[wid] - t0) * 1000)
        await terminate_all(client, ids)
    p99 = pct(lat, 99)
    return Figure("approval", f"approval latency p99 ({open_n} open)", p99, "ms", "<= 250 ms", p99 <= 250,
                  {"p50_ms": pct(lat, 50), "samples": len(lat)})


async def capacity(client: Client, n: int, warm: int = 20) -> Figure:
    """`n` incidents open at once, each waiting for the IC, on one worker in a process of its
    own (bench.fake_worker): its RSS, and what each open incident adds to it."""
    tq = f"bench-cap-{uuid.uuid4().hex[:6]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fake_worker", client.service_client.config.target_host, client.namespace, tq,
        stdout=asyncio.subprocess.PIPE)
    ids: list[str] = []
    try:
        assert proc.stdout is not None
        if (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("the capacity worker did not start")
        ids += await open_incidents(client, tq, warm)  # imports, caches and pools warmed
        before = rss_mb(proc.pid)
        ids += await open_incidents(client, tq, n - warm)
        rss = rss_mb(proc.pid)
        per_kib = (rss - before) * 1024 / (n - warm)
        server = dev_server_pid()
        return Figure(
            "capacity", f"capacity: worker RSS with {n} open", rss, "MiB", "<= 400 MiB", rss <= 400,
            {"per_incident_kib": round(per_kib, 1), "worker_rss_before_mib": round(before, 1),
             "dev_server_rss_mib": rss_mb(server) if server else None, "open_incidents": n},
        )
    finally:
        await terminate_all(client, ids)
        proc.terminate()
        await proc.wait()


# - ------------------------------------------------------------------ converter cost (no goal)
async def converter_cost(n: int = 2000) -> Figure:
    """What every payload pays: pydantic JSON, and AES-GCM on top when a codec key is set.
    The payload is a closed P0's report (40 timeline entries, 5 actions), the largest one."""
    import dataclasses

    from temporalio.contrib.pydantic import pydantic_data_converter

    from domain.incident import Action, ActionKind, Phase, SlaClock, TimelineEntry
    from worker.codec import codec_from_env, new_key

    rep = IncidentReport(
        incident_id="INC-BENCH", title="api-gateway 502s after deploy", severity=Severity.P0, service="api-gateway",
        status="resolved", phase=Phase.RESOLVED, commander="ic", started_at="2026-11-27T09:00:00Z",
        sla=[SlaClock(name=c, due_seconds=d, met=True, done_seconds=d / 3) for c, d in
             (("diagnostics", 300), ("assessment", 900), ("communication", 900))],
        actions=[Action(id=f"a{i}", kind=ActionKind.HELM_ROLLBACK, reason="revision 12 crash-loops " * 3,
                        params={"release": "healthcare-platform", "to_revision": 11}) for i in range(5)],
        timeline=[TimelineEntry(at_seconds=i * 7.5, actor="codeblue", event=f"Step {i} complete",
                                result="pods 3/3 ready; error rate 0.2%; p99 180 ms " * 2) for i in range(40)],
        summary="rolled back to revision 11", verified=True,
        assessment={"cause": "bad deploy", "evidence": ["CrashLoopBackOff x3", "revision 12 at 08:58"]},
    )
    size = 0

    async def per_round_trip_us(conv) -> float:
        nonlocal size
        t0 = time.perf_counter()
        for _ in range(n):
            payloads = await conv.encode([rep])
            await conv.decode(payloads, [IncidentReport])
        size = max(size, payloads[0].ByteSize())
        return (time.perf_counter() - t0) / n * 1e6

    plain = await per_round_trip_us(pydantic_data_converter)
    codec = codec_from_env({"CODEBLUE_CODEC_KEY": new_key()})
    encrypted = await per_round_trip_us(dataclasses.replace(pydantic_data_converter, payload_codec=codec))
    return Figure("converter", "converter: report encode+decode (no goal)", plain, "us", "-", None,
                  {"with_aes_gcm_us": round(encrypted, 1), "payload_bytes": size, "n": n})


# 5 ------------------------------------------------------------------ alert storm
async def alert_storm(client: Client, alerts: int, keys: int) -> Figure:
    return await run_alert_storm(client, alerts, keys, dev_server=dev_server_pid())


# ------------------------------------------------------------------ the figures, by slug
@dataclass(frozen=True)
class Measure:
    what: str  # for the progress line: "measuring <what>..."
    server: bool  # needs the dev server
    run: Callable[[Client, bool], Awaitable[Figure]]  # (client, quick); a figure with no server gets no client


async def _diagnostics(client: Client, quick: bool) -> Figure:
    return await time_to_diagnostics(client, 5 if quick else 20)


async def _overhead(client: Client, quick: bool) -> Figure:
    return await orchestration_overhead(client, 3 if quick else 10)


async def _approval(client: Client, quick: bool) -> Figure:
    return await approval_latency(client, *((50, 20) if quick else (500, 100)))


async def _capacity(client: Client, quick: bool) -> Figure:
    return await capacity(client, 100 if quick else 1000)


async def _converter(client: Client, quick: bool) -> Figure:
    return await converter_cost(200 if quick else 2000)


async def _scale(client: Client, quick: bool) -> Figure:
    from bench.scale import QUICK_SIZES, SIZES, scale_curve

    return await scale_curve(client, QUICK_SIZES if quick else SIZES, samples=20 if quick else 50)


async def _storm(client: Client, quick: bool) -> Figure:
    return await alert_storm(client, 1000 if quick else 10_000, 100)


MEASURES: dict[str, Measure] = {  # the keys of bench.figures.FIGURES, in the same order
    "diagnostics": Measure("time to diagnostics", True, _diagnostics),
    "overhead": Measure("orchestration overhead", True, _overhead),
    "approval": Measure("approval latency", True, _approval),
    "capacity": Measure("capacity", True, _capacity),
    "converter": Measure("the converter", False, _converter),
    "storm": Measure("the alert storm (split cores, then shared)", True, _storm),
    "scale": Measure("the scale curve (one worker, then two)", True, _scale),
}


async def run_figures(slugs: list[str], quick: bool) -> list[Figure]:
    """The figures named, in the order given, on one dev server started only if one needs it."""
    # every command is signed and verified, as deployed (the storm's API process inherits the key)
    os.environ.setdefault(ENV_KEY, new_key())
    figures: list[Figure] = []
    async with AsyncExitStack() as stack:
        client: Any = None  # stays None when no selected figure needs the server
        if any(MEASURES[s].server for s in slugs):
            env = await stack.enter_async_context(
                dev_server(interceptors=[IdentityInterceptor(keyring_from_env(), via="", roles=["commander", "admin"])]))
            client = env.client
        for slug in slugs:
            m = MEASURES[slug]
            print(f"measuring {m.what}...", flush=True)
            figures.append(await m.run(client, quick))
    return figures
