"""Figure 5: an Alertmanager storm through the HTTP API.

The API runs as its own process (`codeblue api`, as deployed) with the alert spool on; the
worker runs here. The load comes from plain keep-alive HTTP/1.1 connections, so the client's
own overhead stays out of the figure. Latency is per request (one alert each), from the
first byte sent to the last byte of the answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from temporalio.client import Client

from starters.api.alerts import incident_id_for
from starters.api.auth import sha256_hex
from workflows.incident_response import IncidentResponseWorkflow

TOKEN = "bench-alerts-" + "x" * 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        self.port = _free_port()
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


async def run_alert_storm(client: Client, alerts: int, keys: int, rate: float = 1000.0, connections: int = 64):
    """Alerts arrive at `rate` per second (open loop), one per request, over a pool of
    keep-alive connections; each latency counts from the alert's scheduled arrival, so time
    spent waiting for a free connection is in it (no coordinated omission)."""
    from bench.run import Figure, pct

    tq = f"bench-storm-{uuid.uuid4().hex[:6]}"
    run = uuid.uuid4().hex[:6]
    names = [f"Storm{run}-{i}" for i in range(keys)]
    ids = [incident_id_for(f"alertname={n},service=api-gateway") for n in names]
    latencies: list[float] = []
    failures = 0

    def body(n: int) -> bytes:
        return json.dumps({"version": "4", "status": "firing", "receiver": "codeblue", "alerts": [{
            "status": "firing",
            "labels": {"alertname": names[n % keys], "service": "api-gateway", "severity": "warning"},
            "annotations": {"summary": f"storm alert {n}"}, "fingerprint": f"{run}-{n}"}]}).encode()

    async def storm() -> None:
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", api.port))

        async def send(n: int, due: float) -> None:
            nonlocal failures
            payload = body(n)
            r, w = await pool.get()
            try:
                status, _ = await _request(r, w, "POST", "/alerts/alertmanager", payload)
            finally:
                pool.put_nowait((r, w))
            latencies.append((time.perf_counter() - due) * 1000)
            failures += status != 200

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
        worker = subprocess.Popen([sys.executable, "-m", "bench.storm_worker", client.service_client.config.target_host,
                                   client.namespace, tq], stdout=subprocess.PIPE, text=True)
        try:
            if worker.stdout is None or worker.stdout.readline().strip() != "ready":
                raise RuntimeError("the storm's worker did not start")
            await api.ready()
            t0 = time.perf_counter()
            await storm()
            sent = time.perf_counter() - t0
            # "all ingested": every alert on its incident's timeline
            while await api.waiting() > 0:
                await asyncio.sleep(0.05)
            incidents, on_timelines = 0, 0
            for iid in ids:
                try:
                    rep = await client.get_workflow_handle(iid).query(IncidentResponseWorkflow.status)
                except Exception:  # noqa: BLE001 - not found: the key made no incident
                    continue
                incidents += 1
                on_timelines += sum(e.event.startswith("Alert firing") for e in rep.timeline)
            delivered = time.perf_counter() - t0
            for iid in ids:
                try:
                    await client.get_workflow_handle(iid).terminate("bench")
                except Exception:  # noqa: BLE001
                    pass
        finally:
            api.stop()
            _stop(worker)
    p99 = pct(latencies, 99)
    complete = failures == 0 and incidents == keys and on_timelines == alerts
    return Figure(
        f"alert storm ingest p99 ({alerts} alerts, {keys} keys)", p99, "ms", "<= 50 ms", p99 <= 50 and complete,
        {"p50_ms": pct(latencies, 50), "offered_per_second": rate, "incidents": incidents, "expected_incidents": keys, "failed_requests": failures,
         "alerts_on_timelines": on_timelines, "accepted_per_second": round(alerts / sent, 1),
         "all_on_timelines_after_s": round(delivered, 2), "delivery": "spool"},
    )
