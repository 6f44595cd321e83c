"""Complete service recovery: helm upgrade to the last known-good tag, verify, undo.

The runbook says `helm upgrade ... --set image.tag=<last-known-good-tag>` and "verify health".
This workflow decides the tag (CodeBlue's own record of a verified tag, else the newest helm
revision that was not rolled back), asks the IC, upgrades with the rollback to the
pre-upgrade revision registered first, verifies (replicas ready, health N times in a row, log
error rate), and on failure rolls back, re-verifies and pages the engineering manager.
Workflow ID: `<incident>-redeploy`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.helm import HelmActivities
    from activities.release_state import ReleaseStateActivities
    from domain.blast_radius import MutationKind, release_target
    from domain.cluster import (
        HelmRollbackRequest,
    )
    from domain.incident import (
        Action,
        ActionKind,
        ActionState,
        IncidentReport,
        Phase,
        TimelineKind,
    )
    from domain.notify import Audience
    from domain.service_recovery import (
        HelmPreflight,
        HelmPreflightRequest,
        HelmUpgradeRequest,
        HelmUpgradeResult,
        HelmValuesQuery,
        KnownGood,
        KnownGoodQuery,
        RecoveryInput,
        ReleaseReadiness,
        ReleaseReadyRequest,
        choose_fallback_revision,
    )
    from workflows.analysis import analyse
    from workflows.approvals import settle
    from workflows.blast_radius import ask_for, take
    from workflows.blast_radius import release as let_go
    from workflows.playbook import Playbook
    from workflows.runbook_steps import gateway_logs, helm_rollback, verify_health
    from workflows.saga import Saga
    from workflows.steps import NON_RETRYABLE, A, Activity, R, budget
    from workflows.timeline import CODEBLUE, reason

ACTION_ID = "redeploy"
# preflight failures say what is wrong (no release, no chart, no cluster): retrying won't help
PREFLIGHT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE + ["ChartNotFound", "ClusterUnreachable", "HelmOutputInvalid"],
)


@workflow.defn
class ServiceRecoveryWorkflow(Playbook):
    @workflow.init
    def __init__(self, inp: RecoveryInput) -> None:
        self._begin(inp)

    # ---------------------------------------------------------------- handlers
    @workflow.query
    def status(self) -> IncidentReport:
        return self._report()

    # ---------------------------------------------------------------- run
    def _pinned(self) -> list[tuple[str, Any, Any]]:
        return [("release", self.inp.release, self.cfg.helm.release),
                ("namespace", self.inp.namespace, self.cfg.kubernetes.namespace),
                ("chart", self.inp.chart, self.cfg.helm.chart)]

    @workflow.run
    async def run(self, inp: RecoveryInput) -> IncidentReport:
        await self._configure()
        release = inp.release or self.cfg.helm.release
        ns = inp.namespace or self.cfg.kubernetes.namespace
        chart = inp.chart or self.cfg.helm.chart
        self.facts.update(release=release, namespace=ns, chart=chart)
        self.tl.log(inp.requested_by, f"Service recovery requested: {release} in {ns}", f"chart {chart}", kind=TimelineKind.EVENT)
        try:
            await self._recover(release, ns, chart)
        except ApplicationError as e:  # preflight or tag resolution: nothing was changed
            self.status_text = "failed"
            self.summary = e.message
            self.tl.log(CODEBLUE, "Service recovery stopped before any change", e.message, kind=TimelineKind.EVENT)
            self.book.closed_reason = "the recovery has ended"
            raise
        self.book.closed_reason = "the recovery has ended"
        self.phase = Phase.RESOLVED
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._report()

    async def _recover(self, release: str, ns: str, chart: str) -> None:
        rc = self.cfg.recovery
        self.phase = Phase.DIAGNOSTICS
        pre = await self._fatal(
            HelmActivities.helm_preflight,
            HelmPreflightRequest(release=release, namespace=ns, chart=chart),
            "preflight: helm history, status, chart",
        )
        self.facts.update(from_revision=pre.current_revision, from_tag=pre.current_tag)
        self.tl.log(
            CODEBLUE,
            "Preflight passed",
            f"revision {pre.current_revision} ({pre.current_status}, tag {pre.current_tag or 'unknown'}); "
            f"{len(pre.revisions)} revisions; {pre.chart_detail}", kind=TimelineKind.STEP,
        )
        tag, why = await self._target_tag(pre, release, ns)
        self.facts.update(to_tag=tag)

        self.phase = Phase.MITIGATION
        act = self.book.propose(
            Action(
                id=ACTION_ID,
                kind=ActionKind.HELM_UPGRADE,
                reason=f"revision {pre.current_revision} ({pre.current_tag or 'unknown tag'}) -> {tag}: {why}",
                params={
                    "release": release,
                    "namespace": ns,
                    "chart": chart,
                    "from_revision": pre.current_revision,
                    "from_tag": pre.current_tag,
                    "to_tag": tag,
                },
            )
        )
        self.tl.log(CODEBLUE, "Waiting for the IC's decision", f"IC {self.book.commander}: approve or reject {ACTION_ID}", kind=TimelineKind.EVENT)
        await self._await_decision()
        if act.state == ActionState.REJECTED:
            self.status_text = "rejected"
            self.summary = f"IC rejected the redeploy: {act.rejection_reason}"
            return

        # the release is this redeploy's from the upgrade to its verification or its undo
        ask = ask_for(act, self.inp.incident_id, MutationKind.REDEPLOY, release_target(ns, release))
        if not await take(self.tl, act, ask, self.cfg.blast_radius.wait_seconds):
            self.status_text = "withdrawn"
            self.summary = f"not run: {act.result}"
            return
        try:
            saga = Saga(self.tl)
            self.tl.log(CODEBLUE, f"Executing {ACTION_ID} ({act.kind.value})", act.reason, kind=TimelineKind.EXECUTING)
            done: list[HelmUpgradeResult] = []

            async def undo() -> None:
                res = await helm_rollback(
                    self.steps,
                    HelmRollbackRequest(
                        release=release,
                        namespace=ns,
                        from_revision=done[0].new_revision if done else 0,
                        to_revision=pre.current_revision,
                        timeout_seconds=self.cfg.helm.timeout_seconds,
                    ),
                    f"compensate: helm rollback {release} {pre.current_revision}",
                )
                self.facts["rollback_revision"] = res.new_revision
                await self.steps.change_event(
                    "rollback", f"CodeBlue rolled {release} back to revision {pre.current_revision} ({self.inp.incident_id})",
                    {"release": release, "namespace": ns, "to_revision": str(pre.current_revision)})

            saga.register(act, undo, f"helm rollback {release} {pre.current_revision} (the pre-upgrade revision)")
            failure: str | None = None
            try:
                res = await self.steps.write(
                    HelmActivities.helm_upgrade,
                    HelmUpgradeRequest(
                        release=release,
                        namespace=ns,
                        chart=chart,
                        image_tag=tag,
                        from_revision=pre.current_revision,
                        marker=f"codeblue {self.inp.incident_id}: upgrade to {tag}",
                        timeout_seconds=rc.upgrade_timeout_seconds,
                    ),
                    f"helm upgrade {release} --set image.tag={tag} --wait",
                    rc.upgrade_timeout_seconds + 60,
                    heartbeat=True,
                )
                done.append(res)
                self.facts["new_revision"] = res.new_revision
                settle(act, ActionState.EXECUTED, f"revision {pre.current_revision} -> {res.new_revision} (tag {tag})" + (
                    "; found done by an earlier attempt" if res.already_done else ""
                ))
                self.tl.log(CODEBLUE, f"Executed {ACTION_ID}", act.result, kind=TimelineKind.EXECUTED)
                await self.steps.change_event(
                    "upgrade", f"CodeBlue upgraded {release} to image tag {tag} ({self.inp.incident_id})",
                    {"release": release, "namespace": ns, "from_revision": str(pre.current_revision),
                     "to_revision": str(res.new_revision), "image_tag": tag})
            except ActivityError as e:
                failure = f"helm upgrade failed: {reason(e)}"
                settle(act, ActionState.FAILED, failure)
                self.tl.log(CODEBLUE, f"Failed {ACTION_ID}", failure, kind=TimelineKind.FAILED)

            if failure is None:
                self.phase = Phase.RESOLVING
                ok, detail = await self._verify(release, ns, "Verification", settle=True)
                if ok:
                    await self._record(release, ns, tag, done[0].new_revision)
                    self.verified = True
                    self.status_text = "resolved"
                    self.summary = f"{release} at {tag} (revision {done[0].new_revision}), verified: {detail}"
                    return
                failure = f"verification failed: {detail}"

            self.tl.log(CODEBLUE, "Recovery failed; compensating", failure, kind=TimelineKind.COMPENSATION)
            await saga.compensate()
            ok, detail = await self._verify(release, ns, "Re-verification after rollback", settle=False)
            self.verified = ok
            self.status_text = "rolled_back" if ok else "failed"
            self.summary = (
                f"{failure}; rolled back to revision {pre.current_revision} ({pre.current_tag}); "
                + ("service verified healthy" if ok else f"service still unhealthy: {detail}")
            )
            await self.steps.page(
                Audience.ENGINEERING_MANAGER,
                "recovery-failed",
                f"Service recovery of {release} to {tag} failed and was rolled back: {failure}",
                self.inp.severity.value,
                self.book.commander,
            )
        finally:
            await let_go(ask)


    # ---------------------------------------------------------------- steps
    async def _target_tag(self, pre: HelmPreflight, release: str, ns: str) -> tuple[str, str]:
        if self.inp.target_tag:
            why = f"tag {self.inp.target_tag} requested by {self.inp.requested_by}"
            self.tl.log(CODEBLUE, "Target tag", why, kind=TimelineKind.EVENT)
            return self.inp.target_tag, why
        rc = self.cfg.recovery
        rec = await self._fatal(
            ReleaseStateActivities.read_known_good,
            KnownGoodQuery(namespace=ns, release=release, configmap=rc.known_good_configmap),
            f"read last known-good ({rc.known_good_configmap})",
        )
        if rec.found and rec.image_tag:
            why = (
                f"last known-good {rec.image_tag}: verified healthy by CodeBlue at {rec.verified_at} "
                f"(revision {rec.revision}, incident {rec.incident_id}; ConfigMap {rc.known_good_configmap})"
            )
            self.tl.log(CODEBLUE, "Last known-good tag", why, kind=TimelineKind.EVENT)
            return rec.image_tag, why
        self.tl.log(
            CODEBLUE,
            "No known-good record",
            f"ConfigMap {ns}/{rc.known_good_configmap} has no entry for {release}; falling back to helm history", kind=TimelineKind.EVENT,
        )
        choice = choose_fallback_revision(
            pre.revisions, workflow.now(), timedelta(minutes=rc.known_good_window_minutes)
        )
        for line in choice.reasons:
            self.tl.log(CODEBLUE, "Known-good reasoning", line, kind=TimelineKind.EVENT)
        if choice.revision is None:
            raise ApplicationError(
                f"no last known-good tag: no CodeBlue record and no revision of {release} qualifies; "
                "give one with --tag",
                type="NoKnownGood",
                non_retryable=True,
            )
        vals = await self._fatal(
            HelmActivities.helm_revision_values,
            HelmValuesQuery(release=release, namespace=ns, revision=choice.revision),
            f"helm status --revision {choice.revision}",
        )
        if not vals.image_tag:
            raise ApplicationError(
                f"revision {choice.revision} of {release} sets no image.tag; give one with --tag",
                type="NoKnownGood",
                non_retryable=True,
            )
        why = f"last known-good {vals.image_tag}: revision {choice.revision} (newest not rolled back)"
        self.tl.log(CODEBLUE, "Last known-good tag", why, kind=TimelineKind.EVENT)
        return vals.image_tag, why

    async def _await_decision(self) -> None:
        async def remind(pending: list[str]) -> None:
            self.tl.log("sla", "Decision waiting; reminding the IC", ", ".join(pending), kind=TimelineKind.EVENT)
            await self.steps.page(
                Audience.COMMANDER, "redeploy-reminder", f"Decision needed on {', '.join(pending)}",
                self.inp.severity.value, self.book.commander,
            )

        async def escalate(pending: list[str]) -> None:
            self.tl.log("sla", "Decision still waiting; paging engineering manager", ", ".join(pending), kind=TimelineKind.EVENT)
            await self.steps.page(
                Audience.ENGINEERING_MANAGER, "redeploy-waiting", f"IC decision pending on {', '.join(pending)}",
                self.inp.severity.value, self.book.commander,
            )

        m = self.cfg.mitigation
        await self.book.wait_with_reminders(
            lambda: not self.book.all_decided(), m.remind_after_seconds, m.escalate_after_seconds, remind, escalate
        )
        await workflow.wait_condition(self.book.all_decided)

    async def _verify(self, release: str, ns: str, what: str, settle: bool) -> tuple[bool, str]:
        rc, h, k = self.cfg.recovery, self.cfg.health, self.cfg.kubernetes
        if settle and rc.verify_settle_seconds:
            await workflow.sleep(timedelta(seconds=rc.verify_settle_seconds), summary="let the new pods settle")
        problems: list[str] = []
        ready: ReleaseReadiness | None = None
        try:
            ready = await self.steps.write(
                ReleaseStateActivities.release_ready,
                ReleaseReadyRequest(namespace=ns, release=release, timeout_seconds=rc.ready_timeout_seconds),
                f"wait for {release} replicas ready",
                rc.ready_timeout_seconds + 60,
                heartbeat=True,
            )
        except ActivityError as e:
            self.tl.log(CODEBLUE, "Readiness check failed", reason(e), kind=TimelineKind.VERIFICATION)
        if ready is None or not ready.ready:
            problems.append(f"replicas not ready ({ready.detail if ready else 'unknown'})")
        health = await verify_health(self.steps, h, f"curl -f health x{rc.health_successes}", attempts=rc.health_successes)
        if health is None or not health.ok:
            problems.append(
                f"health {health.successes}/{health.attempts} 2xx ({health.error})" if health else "health unknown"
            )
        logs = await gateway_logs(self.steps, k, f"error rate in {k.gateway_deployment} logs", namespace=ns)
        rate = logs.error_rate if logs else None
        if rate is not None and rate > rc.max_error_rate:
            problems.append(f"log error rate {rate:.1%} > {rc.max_error_rate:.1%}")
        if settle:  # after the upgrade: the SLIs decide too
            an = await analyse(self.steps, self.tl, self.inp.incident_id, self.cfg.prometheus, "Metric analysis")
            self.tl.log(CODEBLUE, "Metric analysis " + {True: "passed", False: "failed", None: "not decisive"}[an.ok], an.detail,
                        kind=TimelineKind.VERIFICATION)
            if an.ok is False:
                problems.append(f"SLI analysis failed: {an.detail}")
        ok = not problems
        rate_text = f"log error rate {rate:.1%}" if rate is not None else "log error rate unknown"
        detail = "; ".join(problems) or (
            f"{ready.detail if ready else ''}; health {rc.health_successes}x 2xx; {rate_text}"
        )
        self.tl.log(CODEBLUE, f"{what} {'passed' if ok else 'failed'}", detail, kind=TimelineKind.VERIFICATION)
        return ok, detail

    async def _record(self, release: str, ns: str, tag: str, revision: int) -> None:
        rc = self.cfg.recovery
        rec = KnownGood(
            namespace=ns,
            release=release,
            configmap=rc.known_good_configmap,
            image_tag=tag,
            revision=revision,
            verified_at=workflow.now().isoformat(),
            incident_id=self.inp.incident_id,
        )
        try:
            await self.steps.write(ReleaseStateActivities.record_known_good, rec, "record known-good tag")
            self.tl.log(CODEBLUE, "Recorded known-good", f"{release} {tag} (revision {revision}) in ConfigMap {ns}/{rc.known_good_configmap}", kind=TimelineKind.EVENT)
        except ActivityError as e:  # the service is fine; only the record is missing
            self.tl.log(CODEBLUE, "Recording known-good failed", reason(e), kind=TimelineKind.FAILED)

    async def _fatal(self, activity: Activity[A, R], arg: A, summary: str) -> R:
        """A read whose failure ends the recovery before anything changed, with its reason."""
        try:
            return await workflow.execute_activity_method(
                activity,
                arg,
                start_to_close_timeout=timedelta(seconds=budget(arg, 120)),
                retry_policy=PREFLIGHT_RETRY,
                summary=summary,
            )
        except ActivityError as e:
            cause = e.cause
            kind = cause.type if isinstance(cause, ApplicationError) else "ActivityFailed"
            raise ApplicationError(f"{summary}: {reason(e)}", type=kind or "ActivityFailed", non_retryable=True) from None

    # ---------------------------------------------------------------- report
    def _subject(self) -> tuple[str, str]:
        return (f"Service recovery: {self.facts.get('release', self.inp.release or 'release')}",
                str(self.facts.get("release") or self.inp.release or "release"))
