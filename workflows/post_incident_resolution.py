"""Post-incident steps 1 and 2: verify the resolution, then close the communications, or tell
the IC and reopen the incident when verification fails.

Functions of what they read and write (the workflow's config, state, timeline and report):
the activity calls, timers and child workflow, in their order, are the ones
`PostIncidentWorkflow` issued when this code lived there, so its histories replay unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import FailureError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities import authority
    from activities.kubernetes import KubernetesActivities
    from activities.notify import NotifierActivities
    from activities.post_incident import PostIncidentActivities
    from domain.cluster import NamespaceQuery
    from domain.config import CodeBlueConfig
    from domain.incident import IncidentInput, IncidentReport, TimelineKind
    from domain.notify import Audience, MessageRequest, StatusPageRequest, public_text, public_title
    from domain.post_incident import (
        PostIncidentInput,
        PostIncidentState,
        ReopenRequest,
        SmokeCheckRequest,
        Verification,
    )
    from workflows.analysis import analyse, read_slis
    from workflows.runbook_steps import gateway_logs, verify_health
    from workflows.steps import READ_RETRY, Steps
    from workflows.timeline import CODEBLUE, Timeline


async def verify_resolution(steps: Steps, tl: Timeline, cfg: CodeBlueConfig, st: PostIncidentState,
                            inp: PostIncidentInput, report: IncidentReport) -> Verification:
    """Is the service healthy by every check, not just the IC's word: pods, deployments, log
    error rate, health probes, smoke checks and SLIs. The SLIs before the onset and after go
    into `st`, for the draft."""
    k = cfg.kubernetes
    pi = cfg.postincident
    ns = NamespaceQuery(namespace=k.namespace)
    problems: list[str] = []
    checks: list[str] = []
    pods, deps, logs = await asyncio.gather(
        steps.read(KubernetesActivities.pod_status, ns, "verify pods ready"),
        steps.read(KubernetesActivities.deployment_status, ns, "verify deployments available"),
        gateway_logs(steps, k, "verify log error rate"),
    )
    if pods is None:
        problems.append("pod status unavailable")
    elif pods.not_ready:
        problems.append(f"{len(pods.not_ready)} of {len(pods.pods)} pods not ready")
    else:
        checks.append(f"all {len(pods.pods)} pods ready")
    if deps is None:
        problems.append("deployment status unavailable")
    else:
        short = [f"{d.name} {d.available}/{d.desired}" for d in deps.deployments if d.available < d.desired]
        if short:
            problems.append("deployments not fully available: " + ", ".join(short))
        else:
            checks.append(f"all {len(deps.deployments)} deployments fully available")
    if logs is None:
        problems.append("gateway logs unavailable")
    elif logs.error_rate > pi.max_error_rate:
        problems.append(f"log error rate {logs.error_rate:.0%} above {pi.max_error_rate:.0%}")
    else:
        checks.append(f"log error rate {logs.error_rate:.0%} (limit {pi.max_error_rate:.0%})")

    h = cfg.health
    slow_or_failed: list[str] = []
    latencies: list[float] = []
    for i in range(pi.health_probes):
        if i:
            await workflow.sleep(timedelta(seconds=pi.probe_interval_seconds), summary=f"health probe {i + 1}/{pi.health_probes}")
        r = await verify_health(steps, h, f"verify health {i + 1}/{pi.health_probes}")
        if r is None or not r.ok:
            detail = "did not run" if r is None else f"{r.successes}/{r.attempts} OK" + (f", {r.error}" if r.error else "")
            slow_or_failed.append(f"probe {i + 1}: {detail}")
        elif r.median_latency_ms is not None:
            latencies.append(r.median_latency_ms)
            if r.median_latency_ms > pi.max_latency_ms:
                slow_or_failed.append(f"probe {i + 1}: {r.median_latency_ms:.0f} ms > {pi.max_latency_ms:.0f} ms")
    if slow_or_failed:
        problems.append("health endpoint: " + "; ".join(slow_or_failed))
    else:
        worst = f", worst median {max(latencies):.0f} ms" if latencies else ""
        checks.append(f"health endpoint OK in {pi.health_probes} probes{worst}")

    for sc in pi.smoke_checks:
        res = await steps.read(
            PostIncidentActivities.smoke_check,
            SmokeCheckRequest(name=sc.name, method=sc.method, url=sc.url, expected_status=sc.expected_status),
            f"smoke check {sc.name}",
        )
        if res is None or not res.ok:
            problems.append(f"smoke check {sc.name} failed" + (f": {res.detail}" if res else ""))
        else:
            checks.append(f"smoke check {sc.name}: {res.detail}")

    # the SLIs decide too, and the draft gets before/after
    an = await analyse(steps, tl, inp.incident_id, cfg.prometheus, "Metric analysis")
    if an.ok is False:
        problems.append(f"SLI analysis failed: {an.detail}")
    elif an.ok:
        checks.append(f"SLI analysis passed: {an.detail}")
    if an.readings:
        st.slis_after = {v.name: v.value for v in an.readings[-1].values}
    if cfg.prometheus.url and report.started_at:
        onset = datetime.fromisoformat(report.started_at.replace("Z", "+00:00"))
        before = await read_slis(steps, inp.incident_id, "SLIs before the onset",
                                 at=(onset - timedelta(minutes=10)).isoformat())
        if before is not None and not before.skipped:
            st.slis_before = {v.name: v.value for v in before.values}
    v = Verification(ok=not problems, problems=problems, checks=checks)
    tl.log(
        CODEBLUE,
        "Resolution verified" if v.ok else "Resolution verification failed",
        "; ".join(checks) if v.ok else "; ".join(problems),
        kind=TimelineKind.VERIFICATION,
    )
    return v


async def reopen(steps: Steps, tl: Timeline, st: PostIncidentState, inp: PostIncidentInput, report: IncidentReport,
                 commander: str | None, v: Verification) -> None:
    """Tell the IC; reopen the incident if it is still open, else open a linked one."""
    iid = inp.incident_id
    why = "; ".join(v.problems)
    await steps.page(
        Audience.COMMANDER, "verification-failed", f"{iid} failed post-resolution verification: {why}",
        report.severity.value, commander,
    )
    try:
        # the run this post-mortem belongs to, never a later run of a recurring alert key
        await workflow.execute_activity(
            authority.reopen_incident, ReopenRequest(incident_id=iid, run_id=inp.incident_run_id, reason=why[:2000]),
            start_to_close_timeout=timedelta(seconds=30), retry_policy=READ_RETRY, summary=f"reopen {iid}")
        st.reopened = f"signalled incident {iid} to reopen"
    except FailureError:
        new_id = f"{iid[:55]}-reopened"
        try:
            await workflow.start_child_workflow(
                "IncidentResponseWorkflow",
                IncidentInput(
                    incident_id=new_id,
                    title=f"Reopened {iid}: {report.title}"[:200],
                    severity=report.severity,
                    service=report.service,
                    commander=commander,
                    requested_by=CODEBLUE,
                    severity_reasons=[f"{iid} failed verification after resolution: {why}"[:300]],
                ),
                id=new_id,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{report.severity.value}: reopened {iid}",
            )
            st.reopened = f"{iid} had closed; opened linked incident {new_id}"
        except FailureError as e:
            st.reopened = f"{iid} had closed; a new linked incident is needed ({new_id} could not start: {e})"
    tl.log(CODEBLUE, "Incident reopened", st.reopened, kind=TimelineKind.OPENED)


async def close_communications(steps: Steps, cfg: CodeBlueConfig, st: PostIncidentState, inp: PostIncidentInput,
                               report: IncidentReport) -> None:
    """Only after a verified resolution: the status page, the stakeholders, the incident channel."""
    r = report
    iid = inp.incident_id
    major = r.severity.is_major
    if major:
        await steps.notify(
            NotifierActivities.status_page,
            StatusPageRequest(  # public text only: the title and summary stay internal
                incident_id=iid, title=public_title(r.service), status="resolved",
                message=public_text("verified", r.service, r.public_summary),
                impact="critical" if r.severity.value == "P0" else "major",
            ),
            "Status page resolved",
        )
    await steps.notify(
        NotifierActivities.post_message,
        MessageRequest(
            incident_id=iid,
            kind="stakeholders",
            text=(
                f"[{r.severity.value}] {public_title(r.service)}: resolution verified "
                f"({'; '.join(st.verification.checks if st.verification else [])}). "
                f"Post-mortem within {cfg.postincident.postmortem_within_hours} h."
            ),
            idempotency_key=f"{iid}:stakeholders:postincident",
        ),
        "Stakeholders notified",
    )
    if major:
        await steps.notify(
            NotifierActivities.post_message,
            MessageRequest(
                incident_id=iid, kind="channel_close", text=f"incident-{iid.lower()}",
                idempotency_key=f"{iid}:channel_close",
            ),
            "Incident channel closed",
        )
