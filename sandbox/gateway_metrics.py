"""The sandbox gateway's own metrics, in Prometheus' exposition format, following the scenario:
while its pods are unhealthy the traffic it serves is mostly slow and often 5xx; once healthy,
fast with a trickle of errors. The receiver serves them at `/metrics`.

    m = GatewayMetrics()
    m.advance(healthy=False)             # traffic since the last call, at the current health
    generate_latest(m.registry)          # http_requests_total, http_request_duration_seconds, ...

Traffic is deterministic (fixed shares per profile, no randomness), so SLIs computed from it
are stable: each scrape adds `requests_per_second` x the seconds since the last one, split by
the profile of the health seen at that scrape. Counters stay integers (floors of exact
running totals, so they never go down). One CollectorRegistry per instance: two sandboxes in
one process never share series.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# the histogram's buckets, seconds (upper bounds; +Inf is added)
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class TrafficProfile:
    # share of requests per status code
    codes: dict[str, float]
    # share of requests per latency bucket upper bound (one of BUCKETS)
    latency: dict[float, float]

    @property
    def mean_latency(self) -> float:
        """The midpoint of each bucket, weighted: what `_sum` grows by per request."""
        total, lower = 0.0, 0.0
        for le in BUCKETS:
            total += self.latency.get(le, 0.0) * (lower + le) / 2
            lower = le
        return total


# pods ready, serving normally: 0.5 % 5xx, p99 at 0.25 s
HEALTHY = TrafficProfile(
    codes={"200": 0.995, "500": 0.005},
    latency={0.05: 0.6, 0.1: 0.3, 0.25: 0.09, 0.5: 0.01},
)
# pods crash-looping behind the service: a third of requests fail, p99 near 10 s
UNHEALTHY = TrafficProfile(
    codes={"200": 0.65, "502": 0.2, "503": 0.15},
    latency={0.5: 0.2, 1.0: 0.1, 2.5: 0.3, 5.0: 0.3, 10.0: 0.1},
)


class GatewayMetrics(Collector):
    def __init__(self, service: str = "api-gateway", *, requests_per_second: float = 40.0,
                 max_in_flight: int = 120, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.requests_per_second = requests_per_second
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._last = clock()
        self._healthy = True
        # exact running totals; exposed as floors so counters are integers and never go down
        self._codes: dict[str, float] = {}
        self._buckets: dict[float, float] = {le: 0.0 for le in BUCKETS}
        self._sum = 0.0
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def profile(self, healthy: bool) -> TrafficProfile:
        return HEALTHY if healthy else UNHEALTHY

    def advance(self, healthy: bool) -> None:
        """Account the requests served since the last call, at this health."""
        with self._lock:
            now = self._clock()
            n = max(0.0, now - self._last) * self.requests_per_second
            self._last = now
            self._healthy = healthy
            p = self.profile(healthy)
            for code, share in p.codes.items():
                self._codes[code] = self._codes.get(code, 0.0) + n * share
            for le, share in p.latency.items():
                self._buckets[le] += n * share
            self._sum += n * p.mean_latency

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            requests = CounterMetricFamily("http_requests", "HTTP requests served, by status code",
                                           labels=["service", "method", "code"])
            for code, v in sorted(self._codes.items()):
                requests.add_metric([self.service, "GET", code], math.floor(v))
            yield requests
            cumulative, running = [], 0.0
            for le in BUCKETS:
                running += self._buckets[le]
                cumulative.append((_le(le), math.floor(running)))
            total = math.floor(running)
            cumulative.append(("+Inf", total))
            latency = HistogramMetricFamily("http_request_duration_seconds", "HTTP request latency",
                                            labels=["service"])
            latency.add_metric([self.service], cumulative, sum_value=self._sum)
            yield latency
            p = self.profile(self._healthy)
            in_flight = min(self.max_in_flight, self.requests_per_second * p.mean_latency)  # Little's law
            g = GaugeMetricFamily("http_requests_in_flight", "Requests being served now", labels=["service"])
            g.add_metric([self.service], round(in_flight, 3))
            yield g
            cap = GaugeMetricFamily("http_requests_max_in_flight", "Requests the gateway serves at once",
                                    labels=["service"])
            cap.add_metric([self.service], self.max_in_flight)
            yield cap


def _le(v: float) -> str:
    return repr(float(v))
