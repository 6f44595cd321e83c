"""Figure 5: an Alertmanager storm through the HTTP API (uvicorn on loopback, real HTTP)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import httpx
import uvicorn
from temporalio.client import Client
from temporalio.worker import Worker

from domain.config import AlertRule, ApiConfig, ApiToken, CodeBlueConfig, TemporalSettings
from starters.api.alerts import incident_id_for
from starters.api.app import ApiSettings, create_app
from starters.api.auth import sha256_hex
from tests.fakes import World
from workflows.incident_response import IncidentResponseWorkflow

TOKEN = "bench-alerts-" + "x" * 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_alert_storm(client: Client, alerts: int, keys: int, concurrency: int = 32):
    from bench.run import Figure, pct

    tq = f"bench-storm-{uuid.uuid4().hex[:6]}"
    cfg = CodeBlueConfig(api=ApiConfig(
        tokens=[ApiToken(name="alertmanager", sha256=sha256_hex(TOKEN), roles=["alerts"])],
        alerts_per_second=1_000_000, alerts_burst=1_000_000,
        alert_rules=[AlertRule(match={"severity": "warning"}, severity="P3")],
    ))

    async def factory() -> Client:
        return client

    app = create_app(factory, ApiSettings(config=cfg, temporal=TemporalSettings(task_queue=tq)))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    run = uuid.uuid4().hex[:6]
    names = [f"Storm{run}-{i}" for i in range(keys)]
    latencies: list[float] = []
    failures = 0
    sem = asyncio.Semaphore(concurrency)
    world = World()
    try:
        async with Worker(client, task_queue=tq, workflows=[IncidentResponseWorkflow], activities=world.activities()):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                                         limits=httpx.Limits(max_connections=concurrency), timeout=30) as http:

                async def send(n: int) -> None:
                    nonlocal failures
                    body = {"version": "4", "status": "firing", "receiver": "codeblue", "alerts": [{
                        "status": "firing",
                        "labels": {"alertname": names[n % keys], "service": "api-gateway", "severity": "warning"},
                        "annotations": {"summary": f"storm alert {n}"}, "fingerprint": f"{run}-{n}"}]}
                    async with sem:
                        t0 = time.perf_counter()
                        r = await http.post("/alerts/alertmanager", json=body)
                        latencies.append((time.perf_counter() - t0) * 1000)
                        failures += r.status_code != 200

                t0 = time.perf_counter()
                await asyncio.gather(*(send(n) for n in range(alerts)))
                wall = time.perf_counter() - t0
            incidents = 0
            for name in names:
                key = f"alertname={name},service=api-gateway"
                try:
                    await client.get_workflow_handle(incident_id_for(key)).describe()
                    incidents += 1
                except Exception:  # noqa: BLE001 - not found: the key made no incident
                    pass
            for name in names:
                try:
                    await client.get_workflow_handle(incident_id_for(f"alertname={name},service=api-gateway")).terminate("bench")
                except Exception:  # noqa: BLE001
                    pass
    finally:
        server.should_exit = True
        await serving
    p99 = pct(latencies, 99)
    return Figure(
        f"alert storm ingest p99 ({alerts} alerts, {keys} keys)", p99, "ms", "<= 50 ms", p99 <= 50 and failures == 0,
        {"p50_ms": pct(latencies, 50), "incidents": incidents, "expected_incidents": keys, "failed_requests": failures,
         "alerts_per_second": round(alerts / wall, 1)},
    )
