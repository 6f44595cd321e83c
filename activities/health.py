"""The runbook's `curl -f https://api.../health`, repeated: OK only if every attempt is 2xx."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
from temporalio import activity

from activities.http_client import HttpActivities
from activities.targets import Targets
from domain.cluster import HealthProbeRequest, HealthProbeResult


class HealthActivities(HttpActivities):
    def __init__(self, http: httpx.AsyncClient | None = None, *, pause_seconds: float = 0.5,
                 targets: Targets | None = None) -> None:
        super().__init__(http)
        self.pause_seconds = pause_seconds
        self.targets = targets

    @activity.defn
    async def probe_health(self, req: HealthProbeRequest) -> HealthProbeResult:
        if self.targets:
            self.targets.health_url(req.url)
        attempts = max(1, req.attempts)
        successes = 0
        latencies: list[float] = []
        last_status: int | None = None
        error: str | None = None
        for i in range(attempts):
            if i:
                await asyncio.sleep(self.pause_seconds)
            started = time.perf_counter()
            try:
                resp = await self.http.get(req.url, timeout=req.timeout_seconds)
            except httpx.TimeoutException:
                error = f"attempt {i + 1}: timed out after {req.timeout_seconds:g}s"
            except (httpx.HTTPError, httpx.InvalidURL) as e:
                error = f"attempt {i + 1}: {type(e).__name__}"
            else:
                latencies.append((time.perf_counter() - started) * 1000.0)
                last_status = resp.status_code
                if 200 <= resp.status_code < 300:
                    successes += 1
                else:
                    error = f"attempt {i + 1}: HTTP {resp.status_code}"
            if activity.in_activity():
                activity.heartbeat(i + 1)
        return HealthProbeResult(
            url=req.url,
            ok=successes == attempts,
            successes=successes,
            attempts=attempts,
            last_status=last_status,
            median_latency_ms=round(statistics.median(latencies), 2) if latencies else None,
            error=error,
        )
