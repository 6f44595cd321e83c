"""The runbook steps several playbooks take, each written once.

A change to one of these changes the commands of every workflow that takes it: the pinned
ones need nothing (README, "Upgrades"); the post-incident workflow, if it takes the step,
needs a patch registered in `workflows.patches`.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.steps import WRITE_RETRY, Steps, activity_name
from workflows.timeline import CODEBLUE

with workflow.unsafe.imports_passed_through():
    from activities.health import HealthActivities
    from activities.helm import HelmActivities
    from activities.kubernetes import KubernetesActivities
    from domain.cluster import (
        DbCheckRequest,
        DbCheckResult,
        HealthProbeRequest,
        HealthProbeResult,
        HelmRollbackRequest,
        HelmRollbackResult,
        LogsQuery,
        LogsReport,
        RestartRequest,
        RolloutState,
        RolloutWaitRequest,
    )
    from domain.config import CodeBlueConfig, HealthConfig, KubernetesConfig
    from domain.incident import TimelineKind, Undo


class StepFailed(Exception):
    """A step failed in a way the playbook handles (compensate, report, go on); carries the
    readable reason the timeline and the report show."""


async def restart_and_wait(
    steps: Steps,
    namespace: str,
    deployment: str,
    rollout_timeout_seconds: int,
    *,
    expected_revision: str | None = None,
    prefix: str = "",
    retry: RetryPolicy = WRITE_RETRY,
) -> RolloutState:
    """`kubectl rollout restart`, then wait for the rollout (heartbeating, the rollout's own
    deadline plus a minute). `expected_revision`: the pod template the IC approved restarting."""
    await steps.write(
        KubernetesActivities.rollout_restart,
        RestartRequest(namespace=namespace, deployment=deployment, restarted_at=workflow.now().isoformat(),
                       expected_revision=expected_revision),
        f"{prefix}kubectl rollout restart {deployment}",
        retry=retry,
    )
    return await steps.write(
        KubernetesActivities.wait_rollout,
        RolloutWaitRequest(namespace=namespace, deployment=deployment, timeout_seconds=rollout_timeout_seconds),
        f"{prefix}wait for {deployment} rollout",
        rollout_timeout_seconds + 60,
        heartbeat=True,
        retry=retry,
    )


def db_check_request(cfg: CodeBlueConfig, namespace: str, deployment: str, *, run_command: bool = True) -> DbCheckRequest:
    """The database check from inside the gateway's pod, with its secret; without the
    configured command it only connects (reachability)."""
    d = cfg.database
    return DbCheckRequest(
        namespace=namespace,
        deployment=deployment,
        secret_name=d.secret_name,
        secret_key=d.secret_key,
        command=d.check_command if run_command else None,
        connect_timeout_seconds=d.connect_timeout_seconds,
    )


async def db_check(steps: Steps, cfg: CodeBlueConfig, namespace: str, deployment: str, summary: str, *,
                   retry: RetryPolicy = WRITE_RETRY) -> DbCheckResult:
    """The database check as a step that must run (its failure raises for the caller)."""
    return await steps.write(KubernetesActivities.db_check, db_check_request(cfg, namespace, deployment), summary,
                             retry=retry)


async def verify_health(steps: Steps, h: HealthConfig, summary: str, attempts: int | None = None) -> HealthProbeResult | None:
    """The health endpoint probed `attempts` times (the config's by default); None when the
    probe itself could not run (recorded by `steps.read`)."""
    if not h.url:  # a service the catalog does not know: no endpoint of its own
        steps.timeline.log(CODEBLUE, f"{summary} skipped", "no health URL for this service in the catalog",
                           kind=TimelineKind.STEP)
        return None
    req = HealthProbeRequest(url=h.url, attempts=h.attempts if attempts is None else attempts,
                             timeout_seconds=h.timeout_seconds)
    return await steps.read(HealthActivities.probe_health, req, summary)


async def gateway_logs(steps: Steps, k: KubernetesConfig, summary: str, namespace: str | None = None) -> LogsReport | None:
    """The gateway's recent log lines counted against the configured error patterns."""
    if not k.gateway_deployment:  # a service the catalog does not know: no deployment of its own
        steps.timeline.log(CODEBLUE, f"{summary} skipped", "no deployment for this service in the catalog",
                           kind=TimelineKind.STEP)
        return None
    q = LogsQuery(namespace=k.namespace if namespace is None else namespace, deployment=k.gateway_deployment,
                  tail_lines=k.log_tail_lines, patterns=k.error_patterns)
    return await steps.read(KubernetesActivities.gateway_logs, q, summary)


async def helm_rollback(steps: Steps, req: HelmRollbackRequest, summary: str) -> HelmRollbackResult:
    """`helm rollback --wait` as a step (forward or compensating): helm's own timeout plus a
    minute, heartbeating."""
    return await steps.write(HelmActivities.helm_rollback, req, summary, req.timeout_seconds + 60, heartbeat=True)


def helm_rollback_undo(action_id: str, req: HelmRollbackRequest) -> Undo:
    """The compensation of a helm rollback, as data (it survives continue-as-new): roll back
    to the revision `req` rolls back from. from_revision 0 (unknown until the rollback ran)
    makes the activity find our revision in the history; set it from the result."""
    return Undo(
        action_id=action_id,
        activity=activity_name(HelmActivities.helm_rollback),
        arg=HelmRollbackRequest(
            release=req.release, namespace=req.namespace, from_revision=0,
            to_revision=req.from_revision, timeout_seconds=req.timeout_seconds,
        ).model_dump(mode="json"),
        summary=f"compensate: helm rollback to {req.from_revision}",
        timeout_seconds=req.timeout_seconds + 60,
        heartbeat=True,
    )
