"""Figure 5: an Alertmanager storm through the HTTP API.

As deployed, each part is a process of its own: the API (`codeblue api --alert-spool`), the
worker (`bench.fake_worker`), the dev server, and here the load, standing in for
Alertmanager. Alerts arrive at a fixed rate (open loop), one per request, over keep-alive
HTTP/1.1 connections; each latency counts from the alert's scheduled arrival to the last
byte of the answer, so waiting for a free connection counts too (no coordinated omission).

On a small machine the parts fight for cores, and a starved load generator reads as API
latency. So by default the API and the load share one half of the cores, the dev server and
the worker the other half, as separate machines would be; the same storm unpinned is
measured too and reported beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from temporalio.client import Client

from bench.figures import Figure, pct
from starters.api.alerts import incident_id_for
from starters.api.auth import sha256_hex
from starters.ports import free_port
from workflows.incident_response import IncidentResponseWorkflow

TOKEN = "bench-alerts-" + "x" * 24


async def _request(reader, writer, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    head = (f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    writer.write(head.encode() + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


class _Api:
    """`codeblue api` in a child process, on a fresh port and config."""

    def __init__(self, client: Client, task_queue: str, workdir: Path) -> None:
        self.port = free_port()
        cfg = {"api": {
            "tokens": [{"name": "alertmanager", "sha256": sha256_hex(TOKEN), "roles": ["alerts"]}],
            "alerts_per_second": 1_000_000, "alerts_burst": 1_000_000,
            "alert_rules": [{"match": {"severity": "warning"}, "severity": "P3"}],
            "alert_spool": str(workdir / "alerts.sqlite3"),
        }}
        (workdir / "codeblue.yaml").write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "TEMPORAL_ADDRESS": client.service_client.config.target_host,
               "TEMPORAL_NAMESPACE": client.namespace, "TEMPORAL_TASK_QUEUE": task_queue}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from starters.cli import main; main()", "api", "--port", str(self.port),
             "--config", str(workdir / "codeblue.yaml")],
            env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "api.log", "w"),
        )

    async def ready(self) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", self.port)
                status, _ = await _request(r, w, "GET", "/healthz")
                w.close()
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("the API did not start")

    async def waiting(self) -> int:
        r, w = await asyncio.open_connection("127.0.0.1", self.port)
        status, body = await _request(r, w, "GET", "/readyz")
        w.close()
        return json.loads(body)["alerts_waiting"] if status == 200 else -1

    def stop(self) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # uvicorn re-raises SIGTERM after its shutdown; SIGINT ends cleanly
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass
class Storm:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    incidents: int = 0
    on_timelines: int = 0
    sent_s: float = 0.0
    drained_s: float = 0.0  # the spool empty: every alert signalled to its incident
    delivered_s: float = 0.0


def _halves() -> tuple[set[int], set[int]] | None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return set(cpus[: len(cpus) // 2]), set(cpus[len(cpus) // 2:])


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` (threads started later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass  # the thread ended


async def run_alert_storm(client: Client, alerts: int, keys: int, rate: float = 500.0, dev_server: int | None = None):

    halves = _halves()
    everything = os.sched_getaffinity(0)
    pinned = None
    if halves and dev_server:
        try:
            pinned = await _storm(client, alerts, keys, rate, (halves, dev_server))
        finally:
            _pin(os.getpid(), everything)
            _pin(dev_server, everything)
    unpinned = await _storm(client, alerts, keys, rate, None)
    s = pinned or unpinned
    p99 = pct(s.latencies, 99)
    complete = s.failures == 0 and s.incidents == keys and s.on_timelines == alerts
    return Figure(
        "storm", f"alert storm ingest p99 ({alerts} alerts, {keys} keys, {rate:g}/s)", p99, "ms", "<= 50 ms",
        p99 <= 50 and complete,
        {"p50_ms": pct(s.latencies, 50), "cores": "split" if pinned else "shared", "incidents": s.incidents,
         "expected_incidents": keys, "failed_requests": s.failures, "alerts_on_timelines": s.on_timelines,
         "accepted_per_second": round(alerts / s.sent_s, 1), "all_on_timelines_after_s": round(s.delivered_s, 2),
         # the last alert's wait: from its send to the spool's last delivery to Temporal
         "last_delivered_after_last_sent_s": round(s.drained_s - s.sent_s, 2),
         "delivery": "spool", "shared_cores_p50_ms": pct(unpinned.latencies, 50),
         "shared_cores_p99_ms": pct(unpinned.latencies, 99)},
    )


async def _storm(client: Client, alerts: int, keys: int, rate: float,
                 split: tuple[tuple[set[int], set[int]], int] | None, connections: int = 64) -> Storm:
    tq = f"bench-storm-{uuid.uuid4().hex[:6]}"
    run = uuid.uuid4().hex[:6]
    names = [f"Storm{run}-{i}" for i in range(keys)]
    ids = [incident_id_for(f"alertname={n},service=api-gateway") for n in names]
    out = Storm()

    def body(n: int) -> bytes:
        return json.dumps({"version": "4", "status": "firing", "receiver": "codeblue", "alerts": [{
            "status": "firing",
            "labels": {"alertname": names[n % keys], "service": "api-gateway", "severity": "warning"},
            "annotations": {"summary": f"storm alert {n}"}, "fingerprint": f"{run}-{n}"}]}).encode()

    async def storm(port: int) -> None:
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

        async def send(n: int, due: float) -> None:
            payload = body(n)
            r, w = await pool.get()
            try:
                status, _ = await _request(r, w, "POST", "/alerts/alertmanager", payload)
            finally:
                pool.put_nowait((r, w))
            out.latencies.append((time.perf_counter() - due) * 1000)
            out.failures += status != 200

        start = time.perf_counter()
        sends = []
        for n in range(alerts):
            due = start + n / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            sends.append(asyncio.create_task(send(n, due)))
        await asyncio.gather(*sends)
        while not pool.empty():
            pool.get_nowait()[1].close()

    with tempfile.TemporaryDirectory(prefix="codeblue-storm-") as tmp:
        api = _Api(client, tq, Path(tmp))
        worker = subprocess.Popen([sys.executable, "-m", "bench.fake_worker", client.service_client.config.target_host,
                                   client.namespace, tq], stdout=subprocess.PIPE, text=True)
        try:
            if worker.stdout is None or worker.stdout.readline().strip() != "ready":
                raise RuntimeError("the storm's worker did not start")
            if split:
                (front, back), server = split
                for pid in (api.proc.pid, os.getpid()):
                    _pin(pid, front)
                for pid in (worker.pid, server):
                    _pin(pid, back)
            await api.ready()
            t0 = time.perf_counter()
            await storm(api.port)
            out.sent_s = time.perf_counter() - t0
            # "all ingested": every alert on its incident's timeline
            while await api.waiting() > 0:
                await asyncio.sleep(0.05)
            out.drained_s = time.perf_counter() - t0
            for iid in ids:
                try:
                    rep = await client.get_workflow_handle(iid).query(IncidentResponseWorkflow.status)
                except Exception:  # noqa: BLE001 - not found: the key made no incident
                    continue
                out.incidents += 1
                out.on_timelines += sum(e.event.startswith("Alert firing") for e in rep.timeline)
            out.delivered_s = time.perf_counter() - t0
            for iid in ids:
                try:
                    await client.get_workflow_handle(iid).terminate("bench")
                except Exception:  # noqa: BLE001 - closed already or never started: nothing to end
                    pass
        finally:
            api.stop()
            _stop(worker)
    return out
