"""After a mitigation ran: is the service healthy now, by the same evidence that called for it?

Pods, the health endpoint and the gateway's logs, read again a few times apart, then the
SLIs once (when Prometheus is configured). Read-only: what to do with the answer (withdraw
the proposals still waiting) is the incident's. The activity calls, timers and the
`sli-recheck` patch marker are the ones the incident workflow issued when this lived there.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

from workflows.steps import Steps
from workflows.timeline import CODEBLUE, Timeline

with workflow.unsafe.imports_passed_through():
    from activities.kubernetes import KubernetesActivities
    from domain.assessment import Assessment
    from domain.cluster import LogsReport, NamespaceQuery
    from domain.config import CodeBlueConfig
    from domain.incident import TimelineKind
    from domain.prometheus import breaches
    from workflows.analysis import read_slis
    from workflows.runbook_steps import gateway_logs, verify_health


async def recheck_health(steps: Steps, cfg: CodeBlueConfig) -> tuple[list[str], LogsReport | None]:
    """Up to `mitigation.recheck_attempts` readings, `recheck_interval_seconds` apart, until
    pods are ready and the health endpoint answers; the problems of the last reading (none:
    healthy) and its logs."""
    k, h, m = cfg.kubernetes, cfg.health, cfg.mitigation
    ns = NamespaceQuery(namespace=k.namespace)
    problems: list[str] = []
    logs: LogsReport | None = None
    for attempt in range(m.recheck_attempts):
        if attempt:
            await workflow.sleep(timedelta(seconds=m.recheck_interval_seconds), summary="re-check the evidence")
        pods, health, logs = await asyncio.gather(
            steps.read(KubernetesActivities.pod_status, ns, "re-check pods"),
            verify_health(steps, h, "re-check health endpoint"),
            gateway_logs(steps, k, "re-check gateway logs"),
        )
        problems = []
        if pods is None or pods.not_ready:
            problems.append("pod status unavailable" if pods is None else f"{len(pods.not_ready)} pods not ready")
        if health is None or not health.ok:
            problems.append("health endpoint not OK")
        if not problems:
            break
    return problems, logs


async def recheck_slis(steps: Steps, tl: Timeline, cfg: CodeBlueConfig, incident_id: str,
                       assessment: Assessment | None, after: str) -> None:
    """The SLIs once more, recorded in the assessment (what the report shows) and the timeline."""
    if cfg.prometheus.url and assessment is not None:
        after_slis = await read_slis(steps, incident_id, f"SLIs after {after}")
        if after_slis is not None and not after_slis.skipped:
            assessment.record_slis(after_slis, f"after {after}")
            tl.log(CODEBLUE, f"SLIs after {after}", "; ".join(breaches(after_slis)) or "all within their limits", kind=TimelineKind.VERIFICATION)
