"""The high-memory playbook: input, samples, and the pure rule that finds leak suspects."""

from __future__ import annotations

from pydantic import BaseModel

from domain.bounds import Name
from domain.identity import StartedBy
from domain.incident import IncidentId
from domain.severity import Severity


class MemoryInput(StartedBy):
    incident_id: IncidentId
    commander: str | None = None
    severity: Severity = Severity.P1
    deployment: str | None = None  # None: kubernetes.gateway_deployment


def memory_workflow_id(incident_id: str) -> str:
    return f"{incident_id}-memory"


class MemoryResolution(BaseModel):
    """The IC ends the playbook; the scale-up is undone unless `keep_scale`."""

    by: Name
    keep_scale: bool = False


def leak_suspects(samples: list[dict[str, int]], min_growth: float) -> dict[str, float]:
    """Pods present in every sample whose memory grew at each one, by at least `min_growth`
    overall -> their overall growth (0.25 = +25%)."""
    if len(samples) < 2:
        return {}
    common = set(samples[0]).intersection(*samples[1:])
    out: dict[str, float] = {}
    for pod in sorted(common):
        series = [s[pod] for s in samples]
        if all(b > a for a, b in zip(series, series[1:], strict=False)) and series[0] > 0:
            growth = series[-1] / series[0] - 1
            if growth >= min_growth:
                out[pod] = round(growth, 4)
    return out
