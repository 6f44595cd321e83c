"""The runbook's `curl -f https://api.../health`, repeated: OK only if every attempt is 2xx."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from typing import TYPE_CHECKING

from temporalio import activity

from activities.deferred import deferred
from activities.heartbeat import DEFAULT_INTERVAL_SECONDS, Heartbeater
from activities.http_client import HttpActivities
from activities.targets import Targets
from domain.cluster import HEALTH_PROBE_PAUSE_SECONDS, HealthProbeRequest, HealthProbeResult

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; httpx load only where an activity uses them.
if TYPE_CHECKING:
    import httpx
else:
    httpx = deferred("httpx")

# left of the start-to-close timeout to return the result (at most this share of it)
RETURN_MARGIN_SECONDS = 2.0
RETURN_MARGIN_SHARE = 0.1
# an attempt with less time than this left is not started
MIN_ATTEMPT_SECONDS = 0.05


class HealthActivities(HttpActivities):
    def __init__(self, http: httpx.AsyncClient | None = None, *, pause_seconds: float = HEALTH_PROBE_PAUSE_SECONDS,
                 targets: Targets | None = None, heartbeat_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        super().__init__(http)
        self.pause_seconds = pause_seconds
        self.targets = targets
        self.heartbeat_seconds = heartbeat_seconds

    @staticmethod
    def _time_allowed() -> float:
        """This attempt's start-to-close timeout less a margin to return: past it Temporal
        drops the result, and a report of what was probed so far is worth more than none."""
        timeout = activity.info().start_to_close_timeout if activity.in_activity() else None
        if not timeout:
            return math.inf
        total = timeout.total_seconds()
        return total - min(RETURN_MARGIN_SECONDS, total * RETURN_MARGIN_SHARE)

    @activity.defn
    async def probe_health(self, req: HealthProbeRequest) -> HealthProbeResult:
        """Each attempt is bounded as a whole by `timeout_seconds` (httpx's timeout bounds each
        phase), and all of them by the activity's start-to-close timeout: attempts that no
        longer fit are not made, and the result says so (not ok). The workflow should give
        `req.budget_seconds()` so that never happens."""
        if self.targets:
            self.targets.health_url(req.url)
        attempts = max(1, req.attempts)
        loop = asyncio.get_running_loop()
        allowed = self._time_allowed()
        deadline = loop.time() + allowed
        successes = made = 0
        latencies: list[float] = []
        last_status: int | None = None
        error: str | None = None
        async with Heartbeater(self.heartbeat_seconds, {"attempts_made": 0}) as hb:
            for i in range(attempts):
                if i:
                    await asyncio.sleep(max(0.0, min(self.pause_seconds, deadline - loop.time())))
                remaining = deadline - loop.time()
                if remaining < MIN_ATTEMPT_SECONDS:
                    error = f"{made} of {attempts} attempts made: the {allowed:g}s allowed ran out"
                    break
                limit = min(req.timeout_seconds, remaining)
                started = time.perf_counter()
                made += 1
                try:
                    async with asyncio.timeout(limit):
                        resp = await self.http.get(req.url, timeout=limit)
                except (httpx.TimeoutException, TimeoutError):
                    error = f"attempt {i + 1}: timed out after {limit:g}s"
                except (httpx.HTTPError, httpx.InvalidURL) as e:
                    error = f"attempt {i + 1}: {type(e).__name__}"
                else:
                    latencies.append((time.perf_counter() - started) * 1000.0)
                    last_status = resp.status_code
                    if 200 <= resp.status_code < 300:
                        successes += 1
                    else:
                        error = f"attempt {i + 1}: HTTP {resp.status_code}"
                hb.update({"attempts_made": made, "successes": successes})
        return HealthProbeResult(
            url=req.url,
            ok=successes == attempts,
            successes=successes,
            attempts=attempts,
            last_status=last_status,
            median_latency_ms=round(statistics.median(latencies), 2) if latencies else None,
            error=error,
        )
