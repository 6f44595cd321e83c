"""Turns what the activities saw into an assessment and mitigation proposals.

Pure functions, no I/O: the workflow calls them, tests call them directly.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from domain import catalog
from domain.cluster import (
    DeploymentsReport,
    HealthProbeResult,
    HelmHistory,
    HelmRevision,
    LogsReport,
    MetricsReport,
    PodsReport,
    ServicesReport,
)
from domain.config import CodeBlueConfig
from domain.helm_time import parse_helm_time
from domain.incident import Action, ActionKind
from domain.procedures import CACHE, DB_CONNECTIONS, MEMORY, REDEPLOY, Procedure
from domain.prometheus import SliReport, breaches

MEMORY_PRESSURE_RATIO = 0.85


class Diagnostics(BaseModel):
    """The runbook's immediate actions (0-5 minutes); a part that failed is None."""

    pods: PodsReport | None = None
    services: ServicesReport | None = None
    logs: LogsReport | None = None
    failures: list[str] = []


class Evidence(BaseModel):
    """The raw assessment reads (5-15 minutes); a part that failed is None."""

    deployments: DeploymentsReport | None = None
    metrics: MetricsReport | None = None
    helm: HelmHistory | None = None
    health: HealthProbeResult | None = None
    slis: SliReport | None = None  # the SLIs from Prometheus (None: not read; skipped: no prometheus.url)
    # the other catalog services' health (service -> its probe; None: the probe could not run)
    services: dict[str, HealthProbeResult | None] = {}
    failures: list[str] = []


class RecentDeploy(BaseModel):
    revision: int
    chart: str
    minutes_before_incident: float
    description: str | None = None


class Assessment(BaseModel):
    affected_services: list[str] = []
    not_ready_pods: list[str] = []
    crash_looping: list[str] = []
    user_impact: str = "unknown"
    error_rate: float = 0.0
    connection_errors: int = 0
    cache_errors: int = 0
    resource_pressure: list[str] = []
    recent_deploys: list[RecentDeploy] = []
    current_revision: int | None = None
    previous_revision: int | None = None
    gateway_replicas: int | None = None
    gateway_revision: str | None = None  # deployment.kubernetes.io/revision: its pod template
    # SLIs read from Prometheus: {name, query, value, threshold, comparison, unit, ok, error, when}
    # ("assessment", then "after <action>" for each re-check); breaches as lines; dashboard links
    slis: list[dict[str, Any]] = []
    sli_breaches: list[str] = []
    dashboards: dict[str, str] = {}
    healthy: bool = False
    # the catalog's unhealthy services (this incident's own first) and what they share, if anything
    unhealthy_services: list[str] = []
    shared_cause: str | None = None
    shared_cause_of: list[str] = []
    notes: list[str] = []

    def summary_lines(self) -> list[str]:
        out = [f"User impact: {self.user_impact}"]
        if self.affected_services:
            out.append("Affected: " + ", ".join(self.affected_services))
        if len(self.unhealthy_services) > 1:
            out.append("Unhealthy services: " + ", ".join(self.unhealthy_services))
        if self.shared_cause:
            out.append(f"Shared cause: {self.shared_cause} (of {', '.join(self.shared_cause_of)})")
        if self.crash_looping:
            out.append(f"Crash-looping pods: {len(self.crash_looping)}")
        if self.resource_pressure:
            out.append("Resource pressure: " + "; ".join(self.resource_pressure))
        for d in self.recent_deploys:
            out.append(f"Recent deploy: revision {d.revision} ({d.chart}) {d.minutes_before_incident:.0f} min before")
        if self.sli_breaches:
            out.append("SLIs breached: " + "; ".join(self.sli_breaches))
        return out

    def record_slis(self, rep: SliReport, when: str) -> None:
        """Keep a reading of the SLIs (values only: the report stays small)."""
        for v in rep.values:
            self.slis.append({"name": v.name, "query": v.query, "value": v.value, "threshold": v.threshold,
                              "comparison": v.comparison, "unit": v.unit, "ok": v.ok, "error": v.error, "when": when})
        self.dashboards = rep.dashboards or self.dashboards


def assess(
    diag: Diagnostics, ev: Evidence, cfg: CodeBlueConfig, incident_start: datetime
) -> Assessment:
    a = Assessment()
    gw = cfg.kubernetes.gateway_deployment
    if diag.pods:
        a.not_ready_pods = [p.name for p in diag.pods.pods if not p.ready]
        a.crash_looping = [
            p.name for p in diag.pods.pods if p.waiting_reason == "CrashLoopBackOff"
        ]
        for p in diag.pods.pods:
            if p.last_termination_reason == "OOMKilled":
                a.resource_pressure.append(f"{p.name} OOMKilled ({p.restarts} restarts)")
    if ev.deployments:
        for d in ev.deployments.deployments:
            if d.unavailable > 0 or d.ready < d.desired:
                a.affected_services.append(d.name)
            if d.name == gw:
                a.gateway_replicas = d.desired
                a.gateway_revision = d.revision
    if ev.metrics and ev.metrics.served:
        for m in ev.metrics.pods:
            ratio = m.memory_ratio
            if ratio is not None and ratio >= MEMORY_PRESSURE_RATIO:
                a.resource_pressure.append(f"{m.pod} memory at {ratio:.0%} of limit")
    elif ev.metrics and not ev.metrics.served:
        a.notes.append("metrics API not served; memory pressure unknown")
    if ev.slis is not None:
        if ev.slis.skipped:
            a.notes.append(f"SLIs skipped: {ev.slis.detail}")
        else:
            a.record_slis(ev.slis, "assessment")
            a.sli_breaches = breaches(ev.slis)
    if diag.logs:
        a.error_rate = diag.logs.error_rate
        a.connection_errors = diag.logs.error_counts.get("connection", 0)
        a.cache_errors = diag.logs.error_counts.get("cache", 0)
    if ev.helm and ev.helm.revisions:
        cur = ev.helm.current
        a.current_revision = cur.revision if cur else None
        older = [r for r in ev.helm.revisions if cur and r.revision < cur.revision]
        prev = _previous_good(older)
        a.previous_revision = prev.revision if prev else None
        window = timedelta(minutes=cfg.mitigation.deploy_window_minutes)
        for r in ev.helm.revisions:
            when = parse_helm_time(r.updated)
            if when is None:
                continue
            age = incident_start - when
            if timedelta(0) <= age <= window:
                a.recent_deploys.append(
                    RecentDeploy(
                        revision=r.revision,
                        chart=r.chart,
                        minutes_before_incident=age.total_seconds() / 60,
                        description=r.description,
                    )
                )
    h = ev.health
    if h is None:
        a.user_impact = "unknown (health probe failed to run)"
    elif h.ok:
        a.user_impact = f"health endpoint OK ({h.successes}/{h.attempts}), error rate {a.error_rate:.0%} in logs"
    else:
        status = h.last_status if h.last_status is not None else (h.error or "no answer")
        a.user_impact = (
            f"health endpoint failing ({h.successes}/{h.attempts} OK, last: {status}), "
            f"error rate {a.error_rate:.0%} in logs"
        )
    a.healthy = bool(
        h and h.ok and not a.not_ready_pods and not a.affected_services and diag.pods is not None
    )
    _services(a, ev, cfg)
    return a


def _previous_good(older: list[HelmRevision]) -> HelmRevision | None:
    candidates = [r for r in older if r.status in ("superseded", "deployed")]
    return max(candidates, key=lambda r: r.revision) if candidates else None


def propose(a: Assessment, cfg: CodeBlueConfig) -> list[Action]:
    """The runbook's mitigation menu, each with the reason the evidence gives; nothing for a
    service the catalog does not know (domain.catalog): CodeBlue knows no target of its own."""
    if cfg.unknown_service:
        return []
    ns = cfg.kubernetes.namespace
    gw = cfg.kubernetes.gateway_deployment
    out: list[Action] = []
    deploy = next((d for d in a.recent_deploys if d.revision == a.current_revision), None)
    if deploy and a.previous_revision is not None and not a.healthy:
        out.append(
            Action(
                id="rollback",
                kind=ActionKind.HELM_ROLLBACK,
                reason=(
                    f"revision {deploy.revision} was deployed {deploy.minutes_before_incident:.0f} min "
                    f"before the incident; roll {cfg.helm.release} back to revision {a.previous_revision}"
                ),
                params={
                    "release": cfg.helm.release,
                    "namespace": ns,
                    "from_revision": deploy.revision,
                    "to_revision": a.previous_revision,
                },
            )
        )
    elif deploy and a.previous_revision is None and not a.healthy:
        out.append(
            _playbook(
                REDEPLOY,
                f"revision {deploy.revision} was deployed {deploy.minutes_before_incident:.0f} min before the incident "
                "and no earlier revision is healthy to roll back to; redeploy the last known-good tag",
            )
        )
    target = cfg.mitigation.scale_replicas
    under_pressure = bool(a.resource_pressure) or gw in a.affected_services
    if under_pressure and (a.gateway_replicas is None or a.gateway_replicas < target):
        why = "; ".join(a.resource_pressure) or f"{gw} has unavailable replicas"
        out.append(
            Action(
                id="scale",
                kind=ActionKind.SCALE_UP,
                reason=f"{why}; scale {gw} to {target} replicas",
                # from_replicas: what the IC saw; the step refuses if the count moved since
                params={"namespace": ns, "deployment": gw, "replicas": target, "from_replicas": a.gateway_replicas},
            )
        )
    if a.connection_errors > 0:
        out.append(
            Action(
                id="restart",
                kind=ActionKind.ROLLOUT_RESTART,
                reason=f"{a.connection_errors} connection errors in {gw} logs; restart its pods",
                # revision: the pod template the IC saw; the step refuses if a rollout replaced it
                params={"namespace": ns, "deployment": gw, "revision": a.gateway_revision},
            )
        )
        out.append(
            Action(
                id="db-check",
                kind=ActionKind.DB_CHECK,
                reason="connection errors in logs; check the database connection",
                params={"namespace": ns, "deployment": gw},
            )
        )
    if a.connection_errors > 0:
        out.append(
            _playbook(
                DB_CONNECTIONS,
                f"{a.connection_errors} connection errors in {gw} logs; check RDS, the pool and reachability, "
                "restart or restore (runbook: Database Connection Issues)",
            )
        )
    if a.resource_pressure:
        out.append(
            _playbook(
                MEMORY,
                "; ".join(a.resource_pressure) + "; sample memory for leaks, then scale or restart (runbook: High Memory Usage)",
            )
        )
    if a.cache_errors > 0:
        out.append(
            _playbook(
                CACHE,
                f"{a.cache_errors} Redis errors in {gw} logs; check the cache cluster (runbook: Redis Cache Issues)",
            )
        )
    if a.shared_cause and any(act.id == DB_CONNECTIONS.proposal for act in out):
        # one database proposal for a shared cause: the playbook checks the connection itself
        out = [act for act in out if act.kind != ActionKind.DB_CHECK]
    elif a.shared_cause and not any(act.kind == ActionKind.DB_CHECK for act in out):
        out.append(Action(
            id="db-check", kind=ActionKind.DB_CHECK,
            reason=f"{a.shared_cause} is shared by the unhealthy {', '.join(a.shared_cause_of)}; check the database connection",
            params={"namespace": ns, "deployment": gw}))
    return out


def _playbook(p: Procedure, reason: str) -> Action:
    """The incident's proposal that starts procedure `p` as a child (domain.procedures)."""
    assert p.proposal is not None, p.key
    return Action(id=p.proposal, kind=ActionKind.PLAYBOOK, reason=reason, params={"workflow": p.workflow})


def _services(a: Assessment, ev: Evidence, cfg: CodeBlueConfig) -> None:
    """The catalog's other services' health, and what the unhealthy ones share (domain.catalog)."""
    if not ev.services:
        return
    own = cfg.acting_for or cfg.unknown_service or ""
    others = sorted(n for n, h in ev.services.items() if h is not None and not h.ok)
    a.unhealthy_services = ([own] if own and not a.healthy else []) + others
    shared = catalog.shared_cause(cfg, a.unhealthy_services)
    if shared:
        a.shared_cause, a.shared_cause_of = shared
        a.notes.append(f"{len(a.shared_cause_of)} services share {a.shared_cause}: likely the cause, "
                       "rather than any one service's change")


def rank(a: Assessment, actions: list[Action]) -> list[Action]:
    """Order the proposals by how well the evidence supports them (rank 1 first) and mark the
    best one `recommended`, with the one-line why the IC sees first. The proposals themselves
    (their IDs, order of proposal and params) are not changed."""
    deploy = next((d for d in a.recent_deploys if d.revision == a.current_revision), None)
    broken = a.crash_looping or a.not_ready_pods
    symptoms = (f"{len(a.crash_looping)} pods crash-looping since" if a.crash_looping
                else f"{len(a.not_ready_pods)} pods not ready since" if a.not_ready_pods else "the errors began after it")

    shared = f"{a.shared_cause} is shared by the unhealthy {', '.join(a.shared_cause_of)}" if a.shared_cause else ""

    def score(act: Action) -> tuple[int, str]:
        slo = f"; {a.sli_breaches[0]}" if a.sli_breaches else ""
        workflow_name = act.params.get("workflow") if act.kind == ActionKind.PLAYBOOK else None
        if shared and (workflow_name == DB_CONNECTIONS.workflow or act.kind == ActionKind.DB_CHECK):
            return 96, f"{shared}: the database side first"
        if shared and act.kind == ActionKind.HELM_ROLLBACK:
            return 35, f"{shared}: this service's deploy explains none of the others"
        if act.kind == ActionKind.HELM_ROLLBACK and deploy:
            return 95 if broken or a.sli_breaches else 90, (
                f"revision {deploy.revision} deployed {deploy.minutes_before_incident:.0f} min before the onset; "
                f"{symptoms}{slo}")
        if workflow_name == REDEPLOY.workflow and deploy:
            return 85, (f"revision {deploy.revision} deployed {deploy.minutes_before_incident:.0f} min before the onset "
                        "and no earlier revision is healthy: redeploy the known-good tag")
        if workflow_name == MEMORY.workflow and a.resource_pressure:
            return 75, f"memory pressure: {a.resource_pressure[0]}"
        if workflow_name == CACHE.workflow and a.cache_errors:
            return 72, f"{a.cache_errors} Redis errors in the gateway's logs"
        if workflow_name == DB_CONNECTIONS.workflow and a.connection_errors:
            if deploy:
                return 40, f"{a.connection_errors} connection errors, but a deploy came first"
            return 70, f"{a.connection_errors} connection errors and no deploy before the onset: the database side"
        if act.kind == ActionKind.SCALE_UP:
            return (50, "; ".join(a.resource_pressure)) if a.resource_pressure else (30, "replicas unavailable")
        if act.kind == ActionKind.ROLLOUT_RESTART:
            return (25, "connection errors, after a deploy") if deploy else (45, f"{a.connection_errors} connection errors")
        if act.kind == ActionKind.DB_CHECK:
            return 20, "a read-only check of the database connection"
        return 10, "the evidence gives it little support"

    scored = sorted(((score(act), i, act) for i, act in enumerate(actions)), key=lambda x: (-x[0][0], x[1]))
    for n, ((_, why), _, act) in enumerate(scored, start=1):
        act.rank = n
        act.recommended = n == 1
        act.recommendation = why if n == 1 else None
    return [act for _, _, act in scored]
