"""Inputs and results of the activities that read or change the cluster and the release."""

from __future__ import annotations

import math

from pydantic import BaseModel

# Budgets: how long an activity may run given its own request, for the workflow's
# start-to-close timeout (a timeout below the budget kills a healthy, slow attempt).
# Added to a probe's attempts: connecting, returning the result.
BUDGET_MARGIN_SECONDS = 10
# Added to a wait's own timeout: the last poll after the deadline, a hung helm process.
WAIT_MARGIN_SECONDS = 60
# The pause HealthActivities makes between probe attempts unless configured otherwise.
HEALTH_PROBE_PAUSE_SECONDS = 0.5


class NamespaceQuery(BaseModel):
    namespace: str


class PodState(BaseModel):
    name: str
    phase: str
    ready: bool
    restarts: int = 0
    # e.g. CrashLoopBackOff (waiting) or OOMKilled (last termination)
    waiting_reason: str | None = None
    last_termination_reason: str | None = None
    image: str | None = None
    owner: str | None = None  # deployment name derived from labels, when known


class PodsReport(BaseModel):
    namespace: str
    pods: list[PodState] = []

    @property
    def not_ready(self) -> list[PodState]:
        return [p for p in self.pods if not p.ready]


class ServiceState(BaseModel):
    name: str
    type: str
    ready_endpoints: int = 0


class ServicesReport(BaseModel):
    namespace: str
    services: list[ServiceState] = []


class LogsQuery(BaseModel):
    namespace: str
    deployment: str
    tail_lines: int = 500
    # name -> case-insensitive substring
    patterns: dict[str, str] = {}


class LogsReport(BaseModel):
    """Counts only: raw log lines may carry patient data and never leave the activity."""

    deployment: str
    pods_read: int = 0
    lines_scanned: int = 0
    error_counts: dict[str, int] = {}

    @property
    def error_rate(self) -> float:
        if not self.lines_scanned:
            return 0.0
        return self.error_counts.get("error", 0) / self.lines_scanned


class DeploymentState(BaseModel):
    name: str
    desired: int
    ready: int = 0
    available: int = 0
    updated: int = 0
    unavailable: int = 0
    generation: int = 0
    observed_generation: int = 0
    revision: str | None = None  # deployment.kubernetes.io/revision
    images: list[str] = []


class DeploymentsReport(BaseModel):
    namespace: str
    deployments: list[DeploymentState] = []


class PodMetric(BaseModel):
    pod: str
    memory_bytes: int
    memory_limit_bytes: int | None = None

    @property
    def memory_ratio(self) -> float | None:
        if not self.memory_limit_bytes:
            return None
        return self.memory_bytes / self.memory_limit_bytes


class MetricsReport(BaseModel):
    namespace: str
    served: bool = True  # False when metrics.k8s.io is not available
    pods: list[PodMetric] = []


class ScaleRequest(BaseModel):
    namespace: str
    deployment: str
    replicas: int
    # the count the IC saw when approving; another count (neither this nor `replicas`, which a
    # retry finds) means someone else scaled since: refused as ReplicasMoved. None: no check.
    expected_replicas: int | None = None


class ScaleResult(BaseModel):
    deployment: str
    previous_replicas: int
    replicas: int


class RestartRequest(BaseModel):
    namespace: str
    deployment: str
    # Fixed by the workflow so a retried activity writes the same annotation (idempotent).
    restarted_at: str
    # the deployment revision (pod template) the IC saw; a new one since means the pods the
    # restart was approved for are gone: refused as RolloutMoved. None: no check. (Not
    # metadata.generation: a scale bumps that without touching the pods' template.)
    expected_revision: str | None = None


class RolloutWaitRequest(BaseModel):
    namespace: str
    deployment: str
    timeout_seconds: int = 600
    poll_seconds: float = 2.0

    def budget_seconds(self) -> int:
        """The start-to-close timeout wait_rollout needs: its own deadline plus a last poll."""
        return int(self.timeout_seconds) + WAIT_MARGIN_SECONDS


class RolloutState(BaseModel):
    deployment: str
    complete: bool
    desired: int
    updated: int
    available: int


class DbCheckRequest(BaseModel):
    namespace: str
    secret_name: str
    secret_key: str
    deployment: str
    command: list[str] | None = None
    connect_timeout_seconds: float = 5.0


class DbCheckResult(BaseModel):
    ok: bool
    latency_ms: float | None = None
    detail: str  # never the URL or its password


class HealthProbeRequest(BaseModel):
    url: str
    attempts: int = 3
    timeout_seconds: float = 5.0

    def budget_seconds(self, pause_seconds: float = HEALTH_PROBE_PAUSE_SECONDS) -> int:
        """The start-to-close timeout probe_health needs when every attempt times out:
        attempts x (timeout + pause) + margin (a read's fixed 60 s is short from 10 attempts of 5 s)."""
        attempts = max(1, self.attempts)
        return math.ceil(attempts * (max(0.0, self.timeout_seconds) + max(0.0, pause_seconds)) + BUDGET_MARGIN_SECONDS)


class HealthProbeResult(BaseModel):
    url: str
    ok: bool  # every attempt answered 2xx
    successes: int
    attempts: int
    last_status: int | None = None
    median_latency_ms: float | None = None
    error: str | None = None


class HelmQuery(BaseModel):
    release: str
    namespace: str


class HelmRevision(BaseModel):
    revision: int
    updated: str  # as helm prints it (RFC 3339 or helm's own format)
    status: str
    chart: str
    app_version: str | None = None
    description: str | None = None


class HelmHistory(BaseModel):
    release: str
    revisions: list[HelmRevision] = []

    @property
    def current(self) -> HelmRevision | None:
        deployed = [r for r in self.revisions if r.status == "deployed"]
        pool = deployed or self.revisions
        return max(pool, key=lambda r: r.revision) if pool else None


class HelmRollbackRequest(BaseModel):
    release: str
    namespace: str
    to_revision: int
    # The revision that was current when the action was approved; a retry that finds the
    # release already rolled back from it does nothing (idempotent).
    from_revision: int
    timeout_seconds: int = 300

    def budget_seconds(self) -> int:
        """helm's own `--timeout` plus the activity's guard against a hung helm process."""
        return int(self.timeout_seconds) + WAIT_MARGIN_SECONDS


class HelmRollbackResult(BaseModel):
    release: str
    from_revision: int
    to_revision: int
    new_revision: int
    already_done: bool = False
