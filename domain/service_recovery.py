"""Complete service recovery: inputs, helm upgrade models, known-good records and the
pure rule that picks the last known-good revision (pure so a workflow can run it)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import BaseModel, field_validator

from domain.cluster import WAIT_MARGIN_SECONDS, HelmRevision
from domain.helm_time import parse_helm_time
from domain.identity import StartedBy
from domain.incident import IncidentId
from domain.severity import Severity

# An OCI image tag: it goes into `--set image.tag=...`, so nothing else (no comma, no '=').
IMAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ROLLBACK_DESC = re.compile(r"^Rollback to (\d+)$")


def check_tag(v: str) -> str:
    if not IMAGE_TAG_RE.match(v):
        raise ValueError("image tag must be 1-128 letters, digits, '_', '.' or '-' (not starting with '.' or '-')")
    return v


class RecoveryInput(StartedBy):
    """`codeblue redeploy`: helm upgrade to a tag (default: last known-good), verify, undo."""

    incident_id: IncidentId
    commander: str | None = None  # who approves; None: the requester
    severity: Severity = Severity.P1
    release: str | None = None  # None: helm.release from the worker's config
    namespace: str | None = None  # None: kubernetes.namespace
    chart: str | None = None  # None: helm.chart
    target_tag: str | None = None  # None: the last known-good tag

    @field_validator("target_tag")
    @classmethod
    def _tag_ok(cls, v: str | None) -> str | None:
        return None if v is None else check_tag(v)


def recovery_workflow_id(incident_id: str) -> str:
    return f"{incident_id}-redeploy"


# ---------------------------------------------------------------------------- helm


class HelmPreflightRequest(BaseModel):
    release: str
    namespace: str
    chart: str


class HelmPreflight(BaseModel):
    release: str
    revisions: list[HelmRevision] = []
    current_revision: int
    current_status: str
    current_tag: str | None = None
    chart: str
    chart_detail: str  # how the chart was found ("local chart ./x (Chart.yaml)", "repository reference")


class HelmValuesQuery(BaseModel):
    release: str
    namespace: str
    revision: int


class HelmRevisionValues(BaseModel):
    revision: int
    status: str
    image_tag: str | None = None


class HelmUpgradeRequest(BaseModel):
    release: str
    namespace: str
    chart: str
    image_tag: str
    # the revision current when the IC approved: a retry that finds our upgrade done after it
    # does nothing (idempotent)
    from_revision: int
    # written as the revision's description; how a retry recognises its own earlier attempt
    marker: str
    timeout_seconds: int = 300

    def budget_seconds(self) -> int:
        """helm's own `--timeout` plus the activity's guard against a hung helm process."""
        return int(self.timeout_seconds) + WAIT_MARGIN_SECONDS

    @field_validator("image_tag")
    @classmethod
    def _tag_ok(cls, v: str) -> str:
        return check_tag(v)


class HelmUpgradeResult(BaseModel):
    release: str
    from_revision: int
    new_revision: int
    image_tag: str
    already_done: bool = False


# ---------------------------------------------------------------------------- verification


class ReleaseReadyRequest(BaseModel):
    namespace: str
    release: str
    timeout_seconds: int = 300
    poll_seconds: float = 1.0

    def budget_seconds(self) -> int:
        """release_ready's own deadline plus a last poll."""
        return int(self.timeout_seconds) + WAIT_MARGIN_SECONDS


class ReleaseReadiness(BaseModel):
    ready: bool
    detail: str  # e.g. "api-gateway 3/3, patient-portal 2/2"
    deployments: int = 0


# ---------------------------------------------------------------------------- known good


class KnownGoodQuery(BaseModel):
    namespace: str
    release: str
    configmap: str = "codeblue-known-good"


class KnownGood(BaseModel):
    """A tag CodeBlue verified healthy, stored in ConfigMap `configmap`, key = release."""

    found: bool = True
    namespace: str
    release: str
    configmap: str = "codeblue-known-good"
    image_tag: str | None = None
    revision: int | None = None
    verified_at: str | None = None  # ISO 8601
    incident_id: str | None = None


class KnownGoodChoice(BaseModel):
    revision: int | None  # None: no revision qualifies
    reasons: list[str] = []


def choose_fallback_revision(
    revisions: list[HelmRevision], now: datetime, window: timedelta
) -> KnownGoodChoice:
    """The newest revision that was not rolled back within `window` of going out, and that
    has been live at least `window` (a younger one is not proven yet). Rollback revisions
    qualify like any other (they redeploy a proven tag)."""
    ordered = sorted(revisions, key=lambda r: r.revision)
    reasons: list[str] = []
    for i in range(len(ordered) - 1, -1, -1):
        r = ordered[i]
        nxt = ordered[i + 1] if i + 1 < len(ordered) else None
        if r.status not in ("deployed", "superseded"):
            reasons.append(f"revision {r.revision}: skipped, status {r.status}")
            continue
        went_out = parse_helm_time(r.updated)
        if went_out is None:
            reasons.append(f"revision {r.revision}: skipped, unreadable time {r.updated!r}")
            continue
        ended = parse_helm_time(nxt.updated) if nxt is not None else None
        lived = (ended or now) - went_out
        m = _ROLLBACK_DESC.match((nxt.description or "").strip()) if nxt is not None else None
        if nxt is not None and m and int(m.group(1)) != r.revision and lived < window:
            reasons.append(
                f"revision {r.revision}: skipped, rolled back by revision {nxt.revision} "
                f"after {_minutes(lived)} (window {_minutes(window)})"
            )
            continue
        if nxt is None and lived < window:
            reasons.append(f"revision {r.revision}: skipped, live only {_minutes(lived)} (window {_minutes(window)})")
            continue
        reasons.append(f"revision {r.revision}: chosen, live {_minutes(lived)} and not rolled back")
        return KnownGoodChoice(revision=r.revision, reasons=reasons)
    reasons.append("no revision qualifies")
    return KnownGoodChoice(revision=None, reasons=reasons)


def _minutes(d: timedelta) -> str:
    m = int(d.total_seconds() // 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"
