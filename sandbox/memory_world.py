"""In-memory stand-ins for every activity, registered under the real activity names.

Workflow tests use them to script the world (a crash-looping release, a hanging API, a
failing scale) and to count side effects; the benchmarks use them to measure CodeBlue's own
cost with no I/O behind it. `PostWorld` adds the post-incident's activities;
`incident_worker(world)` is what a worker for incidents (and their post-incident child) needs.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.authority import incident_authority, incident_report, reopen_incident
from domain.blast_radius import GuardState, LeaseAnswer, LeaseDone, Mutation, decide, expire, grant, let_go
from domain.catalog import for_service
from domain.cluster import (
    DbCheckRequest,
    DbCheckResult,
    DeploymentsReport,
    DeploymentState,
    HealthProbeRequest,
    HealthProbeResult,
    HelmHistory,
    HelmQuery,
    HelmRevision,
    HelmRollbackRequest,
    HelmRollbackResult,
    LogsQuery,
    LogsReport,
    MetricsReport,
    NamespaceQuery,
    PodsReport,
    PodState,
    RestartRequest,
    RolloutState,
    RolloutWaitRequest,
    ScaleRequest,
    ScaleResult,
    ServicesReport,
    ServiceState,
)
from domain.config import CodeBlueConfig, EnvironmentQuery
from domain.notify import ChangeEventRequest, Delivery, MessageRequest, PageRequest, StatusPageRequest
from domain.post_incident import CalendarInvite, SmokeCheckRequest, SmokeCheckResult
from domain.prometheus import (
    SliQuery,
    SliRangeQuery,
    SliRangeReport,
    SliReport,
    SliSeries,
    SliValue,
    holds,
    parse_time,
)
from domain.slack import (
    SlackBatchResult,
    SlackChannelRef,
    SlackChannelRequest,
    SlackChannelResult,
    SlackMessageRef,
    SlackPostResult,
    SlackProposalBatch,
    SlackProposalRequest,
    SlackUpdateRequest,
    channel_name,
    channel_summary,
    channel_topic,
)

# what the fake Prometheus answers per SLI name by default: the gateway's defaults, all OK
HEALTHY_SLIS = {"5xx ratio": 0.004, "p99 latency": 0.25, "saturation": 0.1}
# the same SLIs while bad pods serve: every default breaches
BREACHING_SLIS = {"5xx ratio": 0.31, "p99 latency": 9.5, "saturation": 0.85}


# The fake worker's config per incident: what `worker_config` answers for it (default: the
# world's). Tests configure the worker this way; an input's `config` counts for nothing.
WORKER_CONFIGS: dict[str, CodeBlueConfig] = {}


def configure_worker(incident_id: str, cfg: CodeBlueConfig | None) -> None:
    if cfg is not None:
        WORKER_CONFIGS[incident_id] = cfg


@dataclass
class World:
    """A scripted healthcare-prod: by default a bad release 12 minutes old."""

    healthy: bool = False
    replicas: int = 3
    revision: int = 12
    deploy_age_minutes: float = 12
    # names of activities that fail (retryably) until cleared
    failing: set[str] = field(default_factory=set)
    # names of activities that fail non-retryably
    broken: set[str] = field(default_factory=set)
    db_ok: bool = True
    # names of mutating activities whose precondition fails: activity -> (error type, facts now)
    moved: dict[str, tuple[str, dict]] = field(default_factory=dict)
    oom: bool = False  # gateway pods were OOMKilled (memory pressure)
    calls: Counter = field(default_factory=Counter)
    pages: list[PageRequest] = field(default_factory=list)
    resolved_pages: list[PageRequest] = field(default_factory=list)  # Events API v2 `resolve`s
    messages: list[MessageRequest] = field(default_factory=list)
    status_updates: list[StatusPageRequest] = field(default_factory=list)
    acknowledged_pages: list[PageRequest] = field(default_factory=list)
    changes: list[ChangeEventRequest] = field(default_factory=list)  # PagerDuty change events
    effects: list[str] = field(default_factory=list)
    handles: list = field(default_factory=list)  # incidents started in this world
    probed: list[str] = field(default_factory=list)  # health URLs probed
    health_by_url: dict[str, bool] = field(default_factory=dict)  # other services' health (else `healthy`)
    db_commands: list = field(default_factory=list)  # db_check commands run
    slack_posts: list[SlackProposalRequest] = field(default_factory=list)  # proposal messages posted
    slack_refused: set[str] = field(default_factory=set)  # action IDs whose message Slack refuses for good
    slack_rounds: list[list[str]] = field(default_factory=list)  # the action IDs of each posting round
    slack_updates: list[SlackUpdateRequest] = field(default_factory=list)  # ... and updated in place
    channels: list[SlackChannelRequest] = field(default_factory=list)  # incident channels opened (Web API)
    config: CodeBlueConfig = field(default_factory=CodeBlueConfig)
    # the blast-radius guard in memory: the same policy (domain.blast_radius) without waiting
    guard: GuardState = field(default_factory=GuardState)
    leases_asked: list[Mutation] = field(default_factory=list)
    # SLI name -> the value the fake Prometheus answers (a name missing: "no data")
    slis: dict[str, float] = field(default_factory=lambda: dict(HEALTHY_SLIS))
    slis_skipped: bool = False  # answer as a worker without prometheus.url does
    sli_queries: list = field(default_factory=list)  # SliQuery / SliRangeQuery received

    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.broken:
            raise ApplicationError(f"{name} is broken", type="Forbidden", non_retryable=True)
        if name in self.failing:
            raise ApplicationError(f"{name}: cluster API unreachable (scripted)")
        if name in self.moved:
            kind, facts = self.moved[name]
            raise ApplicationError(f"{name}: moved since the decision (scripted); nothing was changed", facts,
                                   type=kind, non_retryable=True)

    def pages_to(self, audience: str) -> list[PageRequest]:
        return [p for p in self.pages if p.audience.value == audience]

    def activities(self) -> list:
        w = self

        @activity.defn(name="worker_config")
        async def worker_config(q: EnvironmentQuery) -> CodeBlueConfig:
            w._enter("worker_config")
            cfg = WORKER_CONFIGS.get(q.incident_id) or w.config
            return for_service(cfg, q.service) if q.service else cfg  # as the worker answers

        @activity.defn(name="pod_status")
        async def pod_status(q: NamespaceQuery) -> PodsReport:
            w._enter("pod_status")
            pods = [
                PodState(
                    name=f"api-gateway-{i}",
                    phase="Running",
                    ready=w.healthy,
                    restarts=0 if w.healthy else 7,
                    waiting_reason=None if w.healthy else "CrashLoopBackOff",
                    last_termination_reason="OOMKilled" if w.oom else None,
                    owner="api-gateway",
                )
                for i in range(w.replicas)
            ]
            return PodsReport(namespace=q.namespace, pods=pods)

        @activity.defn(name="service_status")
        async def service_status(q: NamespaceQuery) -> ServicesReport:
            w._enter("service_status")
            return ServicesReport(
                namespace=q.namespace,
                services=[ServiceState(name="api-gateway", type="ClusterIP", ready_endpoints=w.replicas if w.healthy else 0)],
            )

        @activity.defn(name="gateway_logs")
        async def gateway_logs(q: LogsQuery) -> LogsReport:
            w._enter("gateway_logs")
            errors = 0 if w.healthy else 40
            return LogsReport(
                deployment=q.deployment,
                pods_read=w.replicas,
                lines_scanned=100,
                error_counts={"connection": errors, "error": errors},
            )

        @activity.defn(name="deployment_status")
        async def deployment_status(q: NamespaceQuery) -> DeploymentsReport:
            w._enter("deployment_status")
            ready = w.replicas if w.healthy else 0
            return DeploymentsReport(
                namespace=q.namespace,
                deployments=[
                    DeploymentState(
                        name="api-gateway", desired=w.replicas, ready=ready, available=ready,
                        updated=w.replicas, unavailable=w.replicas - ready,
                    )
                ],
            )

        @activity.defn(name="pod_metrics")
        async def pod_metrics(q: NamespaceQuery) -> MetricsReport:
            w._enter("pod_metrics")
            return MetricsReport(namespace=q.namespace, served=False)

        @activity.defn(name="helm_history")
        async def helm_history(q: HelmQuery) -> HelmHistory:
            w._enter("helm_history")
            # the time-skipping server's clock runs ahead of ours: anchor ages to its clock
            start = activity.info().scheduled_time
            return HelmHistory(
                release=q.release,
                revisions=[
                    HelmRevision(revision=11, updated=(start - timedelta(days=3)).isoformat(), status="superseded", chart="healthcare-platform-1.4.2"),
                    HelmRevision(
                        revision=12,
                        updated=(start - timedelta(minutes=w.deploy_age_minutes)).isoformat(),
                        status="deployed",
                        chart="healthcare-platform-1.5.0",
                    ),
                ],
            )

        @activity.defn(name="probe_health")
        async def probe_health(r: HealthProbeRequest) -> HealthProbeResult:
            w._enter("probe_health")
            w.probed.append(r.url)
            ok = w.health_by_url.get(r.url, w.healthy)
            return HealthProbeResult(
                url=r.url, ok=ok, successes=r.attempts if ok else 0, attempts=r.attempts,
                last_status=200 if ok else 503,
            )

        @activity.defn(name="helm_rollback")
        async def helm_rollback(r: HelmRollbackRequest) -> HelmRollbackResult:
            w._enter("helm_rollback")
            if w.revision != r.from_revision and r.from_revision != 0:
                return HelmRollbackResult(release=r.release, from_revision=r.from_revision, to_revision=r.to_revision, new_revision=w.revision, already_done=True)
            old = w.revision
            w.revision += 1
            w.effects.append(f"rollback {old}->{r.to_revision}")
            w.healthy = r.to_revision == 11
            return HelmRollbackResult(release=r.release, from_revision=old, to_revision=r.to_revision, new_revision=w.revision)

        @activity.defn(name="scale_deployment")
        async def scale_deployment(r: ScaleRequest) -> ScaleResult:
            w._enter("scale_deployment")
            prev = w.replicas
            w.replicas = r.replicas
            w.effects.append(f"scale {prev}->{r.replicas}")
            return ScaleResult(deployment=r.deployment, previous_replicas=prev, replicas=r.replicas)

        @activity.defn(name="rollout_restart")
        async def rollout_restart(r: RestartRequest) -> RolloutState:
            w._enter("rollout_restart")
            w.effects.append(f"restart {r.deployment}")
            return RolloutState(deployment=r.deployment, complete=False, desired=w.replicas, updated=0, available=0)

        @activity.defn(name="wait_rollout")
        async def wait_rollout(r: RolloutWaitRequest) -> RolloutState:
            w._enter("wait_rollout")
            return RolloutState(deployment=r.deployment, complete=True, desired=w.replicas, updated=w.replicas, available=w.replicas)

        @activity.defn(name="db_check")
        async def db_check(r: DbCheckRequest) -> DbCheckResult:
            w._enter("db_check")
            w.db_commands.append(r.command)
            return DbCheckResult(ok=w.db_ok, latency_ms=3.0, detail="connected" if w.db_ok else "connection refused")

        @activity.defn(name="page")
        async def page(r: PageRequest) -> Delivery:
            w._enter("page")
            {"resolve": w.resolved_pages, "acknowledge": w.acknowledged_pages}.get(r.action, w.pages).append(r)
            return Delivery(channel="pagerduty", delivered=True)

        @activity.defn(name="change_event")
        async def change_event(r: ChangeEventRequest) -> Delivery:
            w._enter("change_event")
            w.changes.append(r)
            return Delivery(channel="pagerduty", delivered=True)

        @activity.defn(name="status_page")
        async def status_page(r: StatusPageRequest) -> Delivery:
            w._enter("status_page")
            w.status_updates.append(r)
            return Delivery(channel="statuspage", delivered=True)

        @activity.defn(name="post_message")
        async def post_message(r: MessageRequest) -> Delivery:
            w._enter("post_message")
            w.messages.append(r)
            return Delivery(channel="slack", delivered=True)

        def _slis(incident_id: str, names: list[str]):
            cfg = (WORKER_CONFIGS.get(incident_id) or w.config).prometheus
            return [cfg.sli(n) or n for n in names] if names else list(cfg.slis)

        @activity.defn(name="sli_values")
        async def sli_values(q: SliQuery) -> SliReport:
            w._enter("sli_values")
            w.sli_queries.append(q)
            values = []
            for s in _slis(q.incident_id, q.names):
                if isinstance(s, str):
                    values.append(SliValue(name=s, error="not configured in prometheus.slis"))
                    continue
                base = SliValue(name=s.name, query=s.query, threshold=s.threshold, comparison=s.comparison, unit=s.unit)
                v = w.slis.get(s.name)
                if w.slis_skipped:
                    base.error = "skipped: prometheus.url is not set"
                elif v is None:
                    base.error = "no data: the query returned an empty result"
                else:
                    base.value, base.ok = v, holds(v, s.comparison, s.threshold)
                values.append(base)
            if w.slis_skipped:
                return SliReport(skipped=True, detail="prometheus.url is not set", at=q.at, values=values)
            return SliReport(detail=f"{len(values)} SLIs read", at=q.at, values=values)

        @activity.defn(name="sli_range")
        async def sli_range(q: SliRangeQuery) -> SliRangeReport:
            w._enter("sli_range")
            w.sli_queries.append(q)
            start, end = parse_time(q.start).timestamp(), parse_time(q.end).timestamp()
            series = []
            for s in _slis(q.incident_id, q.names):
                if isinstance(s, str):
                    series.append(SliSeries(name=s, error="not configured in prometheus.slis"))
                    continue
                v = w.slis.get(s.name)
                series.append(SliSeries(name=s.name, query=s.query, threshold=s.threshold, comparison=s.comparison,
                                        unit=s.unit, points=[(start, v), (end, v)] if v is not None else [],
                                        error=None if v is not None else "no data: the query returned an empty result"))
            return SliRangeReport(skipped=w.slis_skipped, detail="fake", start=q.start, end=q.end,
                                  step_seconds=q.step_seconds, series=series)

        @activity.defn(name="slack_post_proposals")
        async def slack_post_proposals(b: SlackProposalBatch) -> SlackBatchResult:
            w._enter("slack_post_proposals")
            w.slack_rounds.append([r.action_id for r in b.requests])
            out = []
            for r in b.requests:
                if r.action_id in w.slack_refused:
                    out.append(SlackPostResult(delivered=False, detail="slack chat.postMessage: restricted_action"))
                    continue
                w.slack_posts.append(r)
                ts = f"{len(w.slack_posts)}.000000"
                out.append(SlackPostResult(delivered=True, detail="proposal posted", ref=SlackMessageRef(channel="C-FAKE", ts=ts)))
            return SlackBatchResult(results=out)

        @activity.defn(name="slack_update_proposal")
        async def slack_update_proposal(r: SlackUpdateRequest) -> SlackPostResult:
            w._enter("slack_update_proposal")
            w.slack_updates.append(r)
            return SlackPostResult(delivered=True, detail=f"proposal updated: {r.state}", ref=r.ref)

        @activity.defn(name="slack_open_channel")
        async def slack_open_channel(r: SlackChannelRequest) -> SlackChannelResult:
            """As a worker with a bot token answers: the channel of the incident's name, the
            people the worker's slack.users maps invited, the others named."""
            w._enter("slack_open_channel")
            cfg = (WORKER_CONFIGS.get(r.incident_id) or w.config).slack
            reused = any(c.incident_id == r.incident_id for c in w.channels)
            w.channels.append(r)
            out = SlackChannelResult(opened=True, reused=reused, topic=channel_topic(r.incident_id, r.severity, r.service, r.owners_channel),
                                     bookmarked=bool(r.link),
                                     channel=SlackChannelRef(id=f"C-FAKE-{len(w.channels)}",
                                                             name=channel_name(r.incident_id, cfg.channel_prefix)))
            for p in r.people:
                who = f"{p.name} ({p.role})"
                (out.invited if p.name in cfg.users.values() else out.no_slack_id).append(who)
            out.detail = channel_summary(out)
            return out

        @activity.defn(name="acquire_target")
        async def acquire_target(ask: Mutation) -> LeaseAnswer:
            w._enter("acquire_target")
            w.leases_asked.append(ask)
            now = time.time()
            expire(w.guard, now)
            answer = decide(w.guard, ask, w.config.blast_radius, now)
            if answer.granted:
                grant(w.guard, ask, w.config.blast_radius, now)
            return answer

        @activity.defn(name="release_target")
        async def release_target(done: LeaseDone) -> bool:
            return let_go(w.guard, done)

        return [
            acquire_target, release_target, worker_config, pod_status, service_status, gateway_logs, deployment_status, pod_metrics, helm_history,
            probe_health, helm_rollback, scale_deployment, rollout_restart, wait_rollout, db_check,
            page, change_event, status_page, post_message, slack_post_proposals, slack_update_proposal,
            slack_open_channel, incident_authority, incident_report, reopen_incident, sli_values, sli_range,
        ]


@dataclass
class PostWorld:
    """The fakes' World plus what the post-incident's own activities saw."""

    world: World = field(default_factory=World)
    smoke_ok: bool = True
    smoke_calls: list[SmokeCheckRequest] = field(default_factory=list)
    invites: list[CalendarInvite] = field(default_factory=list)

    def activities(self, replace: list | None = None) -> list:
        pw = self

        @activity.defn(name="smoke_check")
        async def smoke_check(r: SmokeCheckRequest) -> SmokeCheckResult:
            pw.smoke_calls.append(r)
            status = r.expected_status if pw.smoke_ok else 500
            return SmokeCheckResult(name=r.name, ok=pw.smoke_ok, status=status, detail=f"{r.method} -> {status}")

        @activity.defn(name="schedule_postmortem")
        async def schedule_postmortem(i: CalendarInvite) -> Delivery:
            pw.invites.append(i)
            return Delivery(channel="calendar", delivered=True, detail=f"booked {i.start}")

        acts = self.world.activities() + [smoke_check, schedule_postmortem]
        if replace:  # real activities stand in for the fakes of the same name
            names = {_name(a) for a in replace}
            acts = [a for a in acts if _name(a) not in names] + replace
        return acts


def _name(fn) -> str:
    return getattr(fn, "__temporal_activity_definition").name


def incident_worker(world: World) -> dict:
    """Worker options for incidents: resolving one starts its post-incident child."""
    from workflows.incident_response import IncidentResponseWorkflow
    from workflows.post_incident import PostIncidentWorkflow

    return {
        "workflows": [IncidentResponseWorkflow, PostIncidentWorkflow],
        "activities": PostWorld(world=world).activities(),
    }
