"""Runbook severity levels and the classifier that maps observed facts to one."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class Severity(str, Enum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"

    @property
    def is_major(self) -> bool:
        """P0/P1 take the full response (paging, status page); P2/P3 the light path."""
        return self in (Severity.P0, Severity.P1)

    @property
    def rank(self) -> int:
        return int(self.value[1])


# The runbook's criteria, as data: (severity, observation field, label).
SEVERITY_CRITERIA: list[tuple[Severity, str, str]] = [
    (Severity.P0, "complete_outage", "Complete service outage"),
    (Severity.P0, "security_incident", "Data breach or security incident"),
    (Severity.P0, "patient_safety_impact", "Patient safety impact"),
    (Severity.P1, "major_feature_unavailable", "Major feature unavailable"),
    (Severity.P1, "authentication_issues", "Authentication issues"),
    (Severity.P2, "minor_feature_issue", "Minor feature issues"),
    (Severity.P2, "non_critical_bug", "Non-critical bugs"),
    (Severity.P3, "cosmetic_issue", "Cosmetic issues"),
    (Severity.P3, "enhancement_request", "Enhancement requests"),
]
DEGRADATION_P1_ABOVE_PCT = 50.0


class Observations(BaseModel):
    """What the responder saw. Every field is optional; unknown fields are refused."""

    model_config = {"extra": "forbid"}

    complete_outage: bool = False
    security_incident: bool = False
    patient_safety_impact: bool = False
    major_feature_unavailable: bool = False
    authentication_issues: bool = False
    performance_degradation_pct: float | None = Field(default=None, ge=0, le=100)
    minor_feature_issue: bool = False
    non_critical_bug: bool = False
    cosmetic_issue: bool = False
    enhancement_request: bool = False


class Classification(BaseModel):
    severity: Severity
    reasons: list[str]
    page_security: bool = False


def classify(obs: Observations) -> Classification:
    """Highest severity whose criteria match wins; with no match, P3 (nothing urgent seen)."""
    hits: list[tuple[Severity, str]] = [
        (sev, label) for sev, field, label in SEVERITY_CRITERIA if getattr(obs, field)
    ]
    pct = obs.performance_degradation_pct
    if pct is not None and pct > 0:
        if pct > DEGRADATION_P1_ABOVE_PCT:
            hits.append((Severity.P1, f"Performance degradation >50% ({pct:g}%)"))
        else:
            hits.append((Severity.P2, f"Performance degradation <50% ({pct:g}%)"))
    if not hits:
        return Classification(severity=Severity.P3, reasons=["No P0-P2 criterion observed"])
    best = min(sev.rank for sev, _ in hits)
    severity = Severity(f"P{best}")
    reasons = [label for sev, label in hits if sev == severity]
    return Classification(
        severity=severity, reasons=reasons, page_security=obs.security_incident
    )
