"""The scale curve: approval latency and worker RSS as open incidents grow, on one worker and
then on two (each a process of its own, `bench.fake_worker`, with the SDK's default cache as
`codeblue worker` runs), and how each grows from one size to the next.

The incidents stay open as the count grows (500, then 1,500 more, then 3,000 more); at each
size, `samples` incidents picked at random among those open (old ones too, which may have left
the worker's cache) are decided: their other proposals rejected, then the rollback approved,
timed from the approval's send to the rollback activity's start.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client

from bench.figures import Figure, pct, rss_mb
from bench.incidents import open_incidents, terminate_all
from domain.incident import Decision
from starters import service
from workflows.incident_response import IncidentResponseWorkflow

SIZES = (500, 2000, 5000)
QUICK_SIZES = (50, 100, 200)
WAVE = 200


class Workers:
    """`n` stamped fake workers on one task queue, and when each rollback started (any of them)."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.started: dict[str, float] = {}
        self._readers: list[asyncio.Task] = []

    async def _read(self, proc: asyncio.subprocess.Process, ready: asyncio.Future) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            words = line.decode().split()
            if words == ["ready"] and not ready.done():
                ready.set_result(None)
            elif len(words) == 3 and words[0] == "rollback":
                self.started.setdefault(words[1], float(words[2]))
        if not ready.done():
            ready.set_exception(RuntimeError("a scale worker exited before it was ready"))

    async def add(self, client: Client, tq: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fake_worker", client.service_client.config.target_host, client.namespace, tq,
            "--cache", "0", "--stamp", stdout=asyncio.subprocess.PIPE)
        ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.procs.append(proc)
        self._readers.append(asyncio.ensure_future(self._read(proc, ready)))
        await asyncio.wait_for(ready, 60)

    def rss(self) -> list[float]:
        return [round(rss_mb(p.pid), 1) for p in self.procs]

    async def close(self) -> None:
        for p in self.procs:
            if p.returncode is None:
                p.terminate()
        for p in self.procs:
            await p.wait()
        for t in self._readers:
            t.cancel()


@asynccontextmanager
async def workers(client: Client, tq: str, n: int) -> AsyncIterator[Workers]:
    w = Workers()
    try:
        for _ in range(n):
            await w.add(client, tq)
        yield w
    finally:
        await w.close()


async def approve(client: Client, w: Workers, wid: str, timeout: float = 60) -> float:
    """Milliseconds from the rollback's approval to its activity's start."""
    rep = await client.get_workflow_handle(wid).query(IncidentResponseWorkflow.status)
    for a in rep.actions:
        if a.id != "rollback":
            await service.decide(client, wid, Decision(action_id=a.id, approve=False, by="ic", reason="bench"))
    t0 = time.monotonic()
    await service.decide(client, wid, Decision(action_id="rollback", approve=True, by="ic"))
    end = t0 + timeout
    while wid not in w.started:
        if time.monotonic() > end:
            raise TimeoutError(f"{wid}: the approved rollback did not start in {timeout} s")
        await asyncio.sleep(0.001)
    return (w.started[wid] - t0) * 1000


async def curve(client: Client, n_workers: int, sizes: tuple[int, ...], samples: int, rng: random.Random) -> list[dict[str, Any]]:
    tq = f"bench-scale-{uuid.uuid4().hex[:6]}"
    rows: list[dict[str, Any]] = []
    ids: list[str] = []
    async with workers(client, tq, n_workers) as w:
        try:
            undecided: list[str] = []
            for size in sizes:
                t0 = time.monotonic()
                new: list[str] = []
                while len(ids) + len(new) < size:  # in waves: a thousand started at once all crawl together
                    new += await open_incidents(client, tq, min(WAVE, size - len(ids) - len(new)))
                opened_s = time.monotonic() - t0
                ids += new
                undecided += new
                picked = rng.sample(undecided, min(samples, len(undecided)))
                undecided = [i for i in undecided if i not in set(picked)]
                lat = [await approve(client, w, wid) for wid in picked]
                rss = w.rss()
                rows.append({"workers": n_workers, "open": size, "approval_p50_ms": round(pct(lat, 50), 1),
                             "approval_p99_ms": round(pct(lat, 99), 1), "samples": len(lat),
                             "rss_mib": round(sum(rss), 1), "rss_per_worker_mib": rss,
                             "opened_per_s": round(len(new) / opened_s, 1)})
                print(f"  {n_workers} worker(s), {size} open: approval p99 {rows[-1]['approval_p99_ms']} ms, "
                      f"RSS {rows[-1]['rss_mib']} MiB", flush=True)
        finally:
            await terminate_all(client, ids)
    return rows


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """From each size to the next, per worker count: how many times the open count, the p99 and the RSS grew."""
    out = []
    for a, b in zip(rows, rows[1:], strict=False):
        if a["workers"] != b["workers"]:
            continue
        out.append({"workers": a["workers"], "open": f"{a['open']} -> {b['open']}",
                    "open_x": round(b["open"] / a["open"], 2),
                    "approval_p99_x": round(b["approval_p99_ms"] / a["approval_p99_ms"], 2) if a["approval_p99_ms"] else None,
                    "rss_x": round(b["rss_mib"] / a["rss_mib"], 2) if a["rss_mib"] else None})
    return out


async def scale_curve(client: Client, sizes: tuple[int, ...] = SIZES, samples: int = 50, worker_counts: tuple[int, ...] = (1, 2)) -> Figure:
    """The figure: approval p99 at the largest size on one worker; the whole curve in its detail."""
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    for n in worker_counts:
        rows += await curve(client, n, sizes, samples, rng)
    top = next(r for r in rows if r["workers"] == worker_counts[0] and r["open"] == sizes[-1])
    p99 = top["approval_p99_ms"]
    return Figure("scale", f"scale: approval latency p99, {sizes[-1]} open, one worker", p99, "ms", "<= 50 ms",
                  p99 <= 50, {"curve": rows, "growth": growth(rows), "cache": "SDK default (as codeblue worker)"})
