"""The API's own metrics: the alert spool's backlog and dead letters.

Recorded through the Temporal SDK runtime's meter, the mechanism the workers' metrics use
(`workflows/metrics.py`), so they are served at the same kind of endpoint: with
`CODEBLUE_METRICS_BIND` set for `codeblue api`, its runtime serves Prometheus text at
`/metrics` (the SDK's client metrics and these). No suffix is added (`counters_total_suffix`
and `unit_suffix` are off); every series carries `service_name="temporal-core-sdk"`.

Metric names:
  codeblue_alert_spool_waiting     (gauge) alerts accepted and not yet delivered
  codeblue_alert_spool_capacity    (gauge) api.alert_spool_max_alerts: past it the API answers 503
  codeblue_alert_dead_letters      (gauge) alerts Temporal refused for good, held for a person
                                           (GET /alerts/dead-letters, POST .../requeue)
"""

from __future__ import annotations

from typing import Any

ALERT_SPOOL_WAITING = "codeblue_alert_spool_waiting"
ALERT_SPOOL_CAPACITY = "codeblue_alert_spool_capacity"
ALERT_DEAD_LETTERS = "codeblue_alert_dead_letters"


class SpoolMetrics:
    """Gauges for one alert spool, on a `temporalio.runtime` meter (`Runtime.metric_meter`)."""

    def __init__(self, meter: Any) -> None:
        self._waiting = meter.create_gauge(ALERT_SPOOL_WAITING, "Alerts accepted and not yet delivered")
        self._capacity = meter.create_gauge(ALERT_SPOOL_CAPACITY, "Alerts the spool holds before answering 503")
        self._dead = meter.create_gauge(ALERT_DEAD_LETTERS, "Alerts Temporal refused for good, held in dead letters")

    def waiting(self, n: int) -> None:
        self._waiting.set(max(0, int(n)))

    def capacity(self, n: int) -> None:
        self._capacity.set(max(0, int(n)))

    def dead_letters(self, n: int) -> None:
        self._dead.set(max(0, int(n)))


def spool_metrics(metrics_bind: str | None) -> SpoolMetrics | None:
    """The spool's gauges on the runtime that serves `metrics_bind` (None: no metrics)."""
    if not metrics_bind:
        return None
    from worker.connection import metrics_runtime

    return SpoolMetrics(metrics_runtime(metrics_bind).metric_meter)
