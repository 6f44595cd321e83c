"""P0/P1 incident response: the runbook's clock and checklist as one durable workflow.

One workflow per incident (workflow ID = incident ID). SLAs are durable timers raced
against the work; nothing that changes production runs without the IC's decision;
approved actions run as a saga whose compensations undo them in reverse on failure.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Awaitable, Callable

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain import search_attributes as sa
    from domain.assessment import Assessment, Diagnostics, Evidence, assess, propose
    from domain.config import CodeBlueConfig, EnvironmentQuery
    from domain.cluster import (
        DbCheckRequest,
        DbCheckResult,
        DeploymentsReport,
        HealthProbeRequest,
        HealthProbeResult,
        HelmHistory,
        HelmQuery,
        HelmRollbackRequest,
        HelmRollbackResult,
        LogsQuery,
        LogsReport,
        MetricsReport,
        NamespaceQuery,
        PodsReport,
        RestartRequest,
        RolloutState,
        RolloutWaitRequest,
        ScaleRequest,
        ScaleResult,
        ServicesReport,
    )
    from domain.incident import (
        Action,
        ActionKind,
        ActionState,
        CommanderAssignment,
        Decision,
        DecisionResult,
        Escalation,
        IncidentInput,
        IncidentReport,
        Phase,
        Resolution,
        ResolutionResult,
        SlaClock,
        TimelineEntry,
    )
    from domain.notify import Audience, Delivery, MessageRequest, PageRequest, StatusPageRequest
    from domain.severity import Severity

NON_RETRYABLE = ["Forbidden", "NotFound", "BadConfig", "HelmNotFound", "NotificationRejected"]
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE,
)
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE + ["RolloutTimeout"],
)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE,
)
CODEBLUE = "codeblue"
HEARTBEAT_TIMEOUT_SECONDS = 15


class _StepFailed(Exception):
    """A mitigation step failed; carries the readable reason."""


@workflow.defn
class IncidentResponseWorkflow:
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self.inp = inp
        self.cfg = inp.config or CodeBlueConfig()
        self.severity: Severity = inp.severity
        self.commander: str | None = inp.commander
        self.phase = Phase.OPEN
        self.started = workflow.info().start_time
        self.timeline: list[TimelineEntry] = []
        self.sla: dict[str, SlaClock] = {}
        self.actions: dict[str, Action] = {}
        self.assessment: Assessment | None = None
        self.status_page_opened = False
        self.resolution: Resolution | None = None
        self.resolution_outcome: ResolutionResult | None = None
        self.final_status = "open"
        self.verified: bool | None = None
        self.summary: str | None = None
        self.diagnostics: Diagnostics | None = None
        self.escalations: list[Escalation] = []
        self.watcher: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- run
    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentReport:
        if inp.config is None:
            self.cfg = await workflow.execute_activity(
                "worker_config",
                EnvironmentQuery(incident_id=inp.incident_id),
                result_type=CodeBlueConfig,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=READ_RETRY,
                summary="read the worker's environment",
            )
        self._log(
            inp.requested_by,
            f"Incident opened: {inp.title}",
            f"{self.severity.value}, service {inp.service}, IC {self.commander or 'unassigned'}",
        )
        for reason in inp.severity_reasons:
            self._log(CODEBLUE, "Severity reason", reason)
        self._upsert()
        if self.severity.is_major:
            c = self.cfg.sla
            self.sla["diagnostics"] = SlaClock(name="diagnostics", due_seconds=c.diagnostics_seconds)
            self.sla["assessment"] = SlaClock(name="assessment", due_seconds=c.assessment_seconds)
            self.sla["communication"] = SlaClock(name="communication", due_seconds=c.communication_seconds)
            await self._page(Audience.ON_CALL, "open", f"{self.severity.value}: {inp.title}")
        if inp.security_incident:
            await self._page(Audience.SECURITY, "security", f"Security incident: {inp.title}")

        # Immediate actions (0-5 min) and assessment (5-15 min) run as one chain,
        # raced against their SLA timers so a hang never holds the clock.
        self._set_phase(Phase.DIAGNOSTICS)
        diag_task = asyncio.ensure_future(self._diagnostics())
        assess_task = asyncio.ensure_future(self._assess_after(diag_task))
        await self._race_sla("diagnostics", diag_task)
        await self._race_sla("assessment", assess_task)

        self._set_phase(Phase.COMMUNICATION)
        await self._communicate(final=False)
        if not assess_task.done():
            await assess_task
        self._set_phase(Phase.MITIGATION)
        if self.severity.is_major:
            self._propose()

        while True:
            await workflow.wait_condition(
                lambda: self.resolution is not None or self._wants_mitigation()
            )
            if self.resolution is None:
                await self._mitigate()
                continue
            if await self._try_resolve(self.resolution):
                break
        if self.watcher and not self.watcher.done():
            self.watcher.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._report()

    # ------------------------------------------------------- queries/updates
    @workflow.query
    def status(self) -> IncidentReport:
        return self._report()

    @workflow.signal
    def assign_commander(self, a: CommanderAssignment) -> None:
        if self.commander and a.by not in (self.commander, *self.cfg.mitigation.approvers):
            self._log(a.by, "Commander change ignored", f"only {self.commander} or an approver may hand over")
            return
        self.commander = a.commander
        self._log(a.by, "Incident commander assigned", a.commander)
        self._upsert()

    @workflow.signal
    def escalate(self, e: Escalation) -> None:
        if e.severity.rank >= self.severity.rank:
            self._log(e.by, "Escalation ignored", f"{e.severity.value} is not above {self.severity.value}")
            return
        old, self.severity = self.severity, e.severity
        self._log(e.by, f"Escalated {old.value} -> {e.severity.value}", e.reason or None)
        self._upsert()
        self.escalations.append(e)

    @workflow.signal
    def approve(self, d: Decision) -> None:
        self._decide_from_signal(d.model_copy(update={"approve": True}))

    @workflow.signal
    def reject(self, d: Decision) -> None:
        self._decide_from_signal(d.model_copy(update={"approve": False}))

    @workflow.update
    def decide(self, d: Decision) -> DecisionResult:
        return self._apply_decision(d)

    @decide.validator
    def _validate_decide(self, d: Decision) -> None:
        problem = self._decision_problem(d)
        if problem:
            raise ApplicationError(problem, type="DecisionRejected")

    @workflow.signal(name="resolve")
    def resolve_signal(self, r: Resolution) -> None:
        problem = self._resolution_problem(r)
        if problem:
            self._log(r.by, "Resolve ignored", problem)
            return
        self.resolution = r

    @workflow.update(name="resolve")
    async def resolve(self, r: Resolution) -> ResolutionResult:
        self.resolution = r
        self.resolution_outcome = None
        await workflow.wait_condition(lambda: self.resolution_outcome is not None)
        assert self.resolution_outcome is not None
        return self.resolution_outcome

    @resolve.validator
    def _validate_resolve(self, r: Resolution) -> None:
        problem = self._resolution_problem(r)
        if problem:
            raise ApplicationError(problem, type="ResolutionRejected")

    # ------------------------------------------------------------ decisions
    def _may_decide(self, who: str) -> bool:
        return who == self.commander or who in self.cfg.mitigation.approvers

    def _decision_problem(self, d: Decision) -> str | None:
        if self.final_status != "open":
            return "incident is already resolved"
        if not self.commander:
            return "no incident commander is assigned; assign one first"
        if not self._may_decide(d.by):
            return f"{d.by} is not the incident commander ({self.commander}) or a configured approver"
        act = self.actions.get(d.action_id)
        if act is None:
            known = ", ".join(self.actions) or "none yet"
            return f"unknown action {d.action_id!r} (proposed: {known})"
        if act.state != ActionState.PROPOSED:
            return f"action {d.action_id!r} was already decided ({act.state.value})"
        if not d.approve and not (d.reason or "").strip():
            return "a rejection needs a reason"
        return None

    def _decide_from_signal(self, d: Decision) -> None:
        problem = self._decision_problem(d)
        if problem:
            verb = "approve" if d.approve else "reject"
            self._log(d.by, f"Ignored {verb} of {d.action_id}", problem)
            return
        self._apply_decision(d)

    def _apply_decision(self, d: Decision) -> DecisionResult:
        act = self.actions[d.action_id]
        act.decided_by = d.by
        act.decided_at_seconds = self._t()
        if d.approve:
            act.state = ActionState.APPROVED
            act.approved_by = d.by
            self._log(d.by, f"Approved {act.id} ({act.kind.value})", d.reason)
        else:
            act.state = ActionState.REJECTED
            act.rejection_reason = d.reason
            self._log(d.by, f"Rejected {act.id} ({act.kind.value})", d.reason)
        self._details()
        return DecisionResult(action_id=act.id, state=act.state, message=f"{act.id} {act.state.value}")

    def _resolution_problem(self, r: Resolution) -> str | None:
        if self.final_status != "open":
            return "incident is already resolved"
        if not self.commander:
            return "no incident commander is assigned; assign one first"
        if not self._may_decide(r.by):
            return f"{r.by} is not the incident commander ({self.commander}) or a configured approver"
        if self.resolution is not None and self.resolution_outcome is None:
            return "a resolution is already being verified"
        return None

    # ------------------------------------------------------------ phases
    async def _diagnostics(self) -> Diagnostics:
        k = self.cfg.kubernetes
        ns = NamespaceQuery(namespace=k.namespace)
        pods, services, logs = await asyncio.gather(
            self._read("pod_status", ns, PodsReport, "kubectl get pods"),
            self._read("service_status", ns, ServicesReport, "kubectl get services"),
            self._read(
                "gateway_logs",
                LogsQuery(
                    namespace=k.namespace,
                    deployment=k.gateway_deployment,
                    tail_lines=k.log_tail_lines,
                    patterns=k.error_patterns,
                ),
                LogsReport,
                f"kubectl logs deployment/{k.gateway_deployment}",
            ),
        )
        d = Diagnostics(pods=pods, services=services, logs=logs)
        d.failures = [n for n, v in (("pods", pods), ("services", services), ("logs", logs)) if v is None]
        self.diagnostics = d
        not_ready = len(pods.not_ready) if pods else "?"
        total = len(pods.pods) if pods else "?"
        errs = logs.error_counts if logs else {}
        self._log(
            CODEBLUE,
            "Immediate actions complete",
            f"pods {total} ({not_ready} not ready), services {len(services.services) if services else '?'}, "
            f"log errors {errs}" + (f"; failed: {', '.join(d.failures)}" if d.failures else ""),
        )
        return d

    async def _assess_after(self, diag_task: "asyncio.Future[Diagnostics]") -> Assessment:
        diag = await diag_task
        if self.phase == Phase.DIAGNOSTICS:
            self._set_phase(Phase.ASSESSMENT)
        k = self.cfg.kubernetes
        ns = NamespaceQuery(namespace=k.namespace)
        h = self.cfg.health
        deployments, metrics, helm, health = await asyncio.gather(
            self._read("deployment_status", ns, DeploymentsReport, "deployments"),
            self._read("pod_metrics", ns, MetricsReport, "kubectl top pods"),
            self._read(
                "helm_history",
                HelmQuery(release=self.cfg.helm.release, namespace=k.namespace),
                HelmHistory,
                "helm history",
            ),
            self._read(
                "probe_health",
                HealthProbeRequest(url=h.url, attempts=h.attempts, timeout_seconds=h.timeout_seconds),
                HealthProbeResult,
                "health endpoint probe",
            ),
        )
        ev = Evidence(deployments=deployments, metrics=metrics, helm=helm, health=health)
        a = assess(diag, ev, self.cfg, self.started)
        self.assessment = a
        self._log(CODEBLUE, "Assessment complete", " | ".join(a.summary_lines()))
        return a

    def _propose(self) -> None:
        if self.actions or self.assessment is None:
            return
        for act in propose(self.assessment, self.cfg):
            self.actions[act.id] = act
            self._log(CODEBLUE, f"Proposed {act.id} ({act.kind.value})", act.reason)
        if not self.actions:
            self._log(CODEBLUE, "No mitigation proposed", "the evidence points at no runbook action")
        else:
            self._log(
                CODEBLUE,
                "Waiting for the IC's decisions",
                f"IC {self.commander or 'unassigned'}: approve or reject "
                + ", ".join(self.actions)
                + "; approved actions run once every proposal is decided",
            )
            self.watcher = asyncio.ensure_future(self._watch_proposals())
        self._details()

    def _undecided(self) -> bool:
        return (
            self.final_status == "open"
            and self.resolution is None
            and any(a.state == ActionState.PROPOSED for a in self.actions.values())
        )

    async def _watch_proposals(self) -> None:
        """Remind the IC, then page the engineering manager; never decide for them."""
        m = self.cfg.mitigation
        try:
            await workflow.wait_condition(
                lambda: not self._undecided(),
                timeout=timedelta(seconds=m.remind_after_seconds),
                timeout_summary="remind IC",
            )
            return
        except asyncio.TimeoutError:
            pending = [a.id for a in self.actions.values() if a.state == ActionState.PROPOSED]
            self._log("sla", "Proposals waiting; reminding the IC", ", ".join(pending))
            await self._page(Audience.COMMANDER, "reminder", f"Decision needed on {', '.join(pending)}: {self.inp.title}")
        try:
            await workflow.wait_condition(
                lambda: not self._undecided(),
                timeout=timedelta(seconds=max(m.escalate_after_seconds - m.remind_after_seconds, 1)),
                timeout_summary="escalate waiting proposals",
            )
        except asyncio.TimeoutError:
            pending = [a.id for a in self.actions.values() if a.state == ActionState.PROPOSED]
            self._log("sla", "Proposals still waiting; paging engineering manager", ", ".join(pending))
            await self._page(
                Audience.ENGINEERING_MANAGER, "decisions-waiting", f"IC decision pending on {', '.join(pending)}: {self.inp.title}"
            )

    async def _race_sla(self, name: str, task: "asyncio.Future[Any]") -> None:
        clock = self.sla.get(name)
        if clock is None:  # light path: no SLA, just the work
            await task
            return
        remaining = clock.due_seconds - self._t()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            await workflow.wait_condition(
                lambda: task.done(),
                timeout=timedelta(seconds=remaining),
                timeout_summary=f"SLA {name} {_mmss(clock.due_seconds)}",
            )
            clock.met = True
            clock.done_seconds = self._t()
            self._log("sla", f"SLA met: {name}", f"at {_mmss(clock.done_seconds)} (due {_mmss(clock.due_seconds)})")
        except asyncio.TimeoutError:
            clock.met = False
            # the timer fired at the due instant; the task that saw it ran a few ms later
            self._log(
                "sla",
                f"SLA missed: {name}",
                f"not complete at {_mmss(clock.due_seconds)}; paging engineering manager",
                at=clock.due_seconds,
            )
            self._details()
            await self._page(
                Audience.ENGINEERING_MANAGER,
                f"sla-{name}",
                f"SLA missed ({name}, {_mmss(clock.due_seconds)}): {self.inp.title}",
            )

    async def _communicate(self, final: bool) -> None:
        title = self.inp.title
        a = self.assessment
        known = " | ".join(a.summary_lines()) if a else "assessment still running"
        if self.severity.is_major:
            sp = await self._notify(
                "status_page",
                StatusPageRequest(
                    incident_id=self.inp.incident_id,
                    title=title,
                    status="resolved" if final else "investigating",
                    message=(self.summary or "Resolved") if final else f"We are investigating: {title}",
                    impact="critical" if self.severity == Severity.P0 else "major",
                ),
                "Update status page",
            )
            self.status_page_opened = self.status_page_opened or bool(sp and sp.delivered)
        text = (
            f"[{self.severity.value}] {title} resolved: {self.summary}"
            if final
            else f"[{self.severity.value}] {title}. IC: {self.commander or 'unassigned'}. {known}"
        )
        await self._notify(
            "post_message",
            MessageRequest(
                incident_id=self.inp.incident_id,
                kind="stakeholders",
                text=text,
                idempotency_key=f"{self.inp.incident_id}:stakeholders:{'final' if final else 'initial'}",
            ),
            "Notify stakeholders",
        )
        if self.severity.is_major:
            kind = "channel_close" if final else "channel_open"
            await self._notify(
                "post_message",
                MessageRequest(
                    incident_id=self.inp.incident_id,
                    kind=kind,
                    text=f"incident-{self.inp.incident_id.lower()}",
                    idempotency_key=f"{self.inp.incident_id}:{kind}",
                ),
                "Close incident channel" if final else "Create incident channel",
            )
        clock = self.sla.get("communication")
        if clock and not final and clock.met is None:
            # "By 15:00": what counts is that the message went out by then.
            clock.met = self._t() <= clock.due_seconds + 1
            clock.done_seconds = self._t()
            self._log("sla", f"SLA {'met' if clock.met else 'missed'}: communication", f"at {_mmss(clock.done_seconds)}")

    def _wants_mitigation(self) -> bool:
        if self.escalations:
            return True
        return any(a.state == ActionState.APPROVED for a in self.actions.values()) and not any(
            a.state == ActionState.PROPOSED for a in self.actions.values()
        )

    async def _mitigate(self) -> None:
        """Run approved actions once every proposal is decided; undo in reverse on failure."""
        while self.escalations:
            e = self.escalations.pop(0)
            await self._page(Audience.ON_CALL, f"escalate-{e.severity.value}", f"Escalated to {e.severity.value}: {self.inp.title}")
            if self.severity.is_major and not self.status_page_opened:
                await self._communicate(final=False)
            if self.severity.is_major:
                self._propose()
        approved = [a for a in self.actions.values() if a.state == ActionState.APPROVED]
        if not approved:
            return
        compensations: list[tuple[Action, Callable[[], Awaitable[None]]]] = []
        try:
            for act in approved:
                await self._execute(act, compensations)
        except _StepFailed as e:
            self._log(CODEBLUE, "Mitigation failed; compensating in reverse", str(e))
            for act, undo in reversed(compensations):
                try:
                    await asyncio.shield(asyncio.ensure_future(undo()))
                    if act.state == ActionState.FAILED:
                        act.result = f"{act.result}; compensated"
                    else:
                        act.state = ActionState.COMPENSATED
                    self._log(CODEBLUE, f"Compensated {act.id}", act.compensation)
                except Exception as ce:  # noqa: BLE001 - recorded, the next undo still runs
                    self._log(CODEBLUE, f"Compensation of {act.id} failed", _reason(ce))
            for act in approved:
                if act.state == ActionState.APPROVED:
                    act.state = ActionState.FAILED
                    act.result = "not run: an earlier step failed"
            await self._page(
                Audience.ENGINEERING_MANAGER, "mitigation-failed", f"Mitigation failed and was rolled back: {self.inp.title}"
            )
        self._details()

    async def _execute(
        self, act: Action, comps: list[tuple[Action, Callable[[], Awaitable[None]]]]
    ) -> None:
        p = act.params
        self._log(CODEBLUE, f"Executing {act.id} ({act.kind.value})", act.reason)
        try:
            if act.kind == ActionKind.HELM_ROLLBACK:
                req = HelmRollbackRequest(
                    release=p["release"],
                    namespace=p["namespace"],
                    from_revision=p["from_revision"],
                    to_revision=p["to_revision"],
                    timeout_seconds=self.cfg.helm.timeout_seconds,
                )
                act.compensation = f"helm rollback {req.release} {req.from_revision} (back to where it was)"
                done: list[HelmRollbackResult] = []

                async def undo_rollback() -> None:
                    await self._write(
                        "helm_rollback",
                        HelmRollbackRequest(
                            release=req.release,
                            namespace=req.namespace,
                            # unknown when the rollback itself failed: the activity then checks history
                            from_revision=done[0].new_revision if done else 0,
                            to_revision=req.from_revision,
                            timeout_seconds=req.timeout_seconds,
                        ),
                        HelmRollbackResult,
                        f"compensate: helm rollback to {req.from_revision}",
                        self.cfg.helm.timeout_seconds + 60,
                        heartbeat=True,
                    )

                comps.append((act, undo_rollback))
                res = await self._write(
                    "helm_rollback",
                    req,
                    HelmRollbackResult,
                    f"helm rollback to {req.to_revision}",
                    self.cfg.helm.timeout_seconds + 60,
                    heartbeat=True,
                )
                done.append(res)
                act.result = f"revision {res.from_revision} -> {res.to_revision} (new revision {res.new_revision})"
                if res.already_done:
                    act.result += "; found done by an earlier attempt, not repeated"
            elif act.kind == ActionKind.SCALE_UP:
                ns, dep, n = p["namespace"], p["deployment"], int(p["replicas"])
                current = await self._read("deployment_status", NamespaceQuery(namespace=ns), DeploymentsReport, "read replicas")
                prev = next((d.desired for d in (current.deployments if current else []) if d.name == dep), None)
                if prev is None:
                    raise _StepFailed(f"cannot read the current replica count of {dep}")
                act.compensation = f"scale {dep} back to {prev} replicas"

                async def undo_scale() -> None:
                    await self._write(
                        "scale_deployment",
                        ScaleRequest(namespace=ns, deployment=dep, replicas=prev),
                        ScaleResult,
                        f"compensate: scale {dep} to {prev}",
                    )

                comps.append((act, undo_scale))
                res = await self._write(
                    "scale_deployment", ScaleRequest(namespace=ns, deployment=dep, replicas=n), ScaleResult, f"scale {dep} to {n}"
                )
                act.result = f"{dep} scaled {res.previous_replicas} -> {res.replicas}"
            elif act.kind == ActionKind.ROLLOUT_RESTART:
                ns, dep = p["namespace"], p["deployment"]
                act.compensation = "none needed (a restart changes no configuration)"
                await self._write(
                    "rollout_restart",
                    RestartRequest(namespace=ns, deployment=dep, restarted_at=workflow.now().isoformat()),
                    RolloutState,
                    f"kubectl rollout restart {dep}",
                )
                st = await self._write(
                    "wait_rollout",
                    RolloutWaitRequest(
                        namespace=ns, deployment=dep, timeout_seconds=self.cfg.mitigation.rollout_timeout_seconds
                    ),
                    RolloutState,
                    f"wait for {dep} rollout",
                    self.cfg.mitigation.rollout_timeout_seconds + 60,
                    heartbeat=True,
                )
                act.result = f"restarted; {st.available}/{st.desired} available"
            elif act.kind == ActionKind.DB_CHECK:
                d = self.cfg.database
                res = await self._write(
                    "db_check",
                    DbCheckRequest(
                        namespace=p["namespace"],
                        deployment=p["deployment"],
                        secret_name=d.secret_name,
                        secret_key=d.secret_key,
                        command=d.check_command,
                        connect_timeout_seconds=d.connect_timeout_seconds,
                    ),
                    DbCheckResult,
                    "database connection check",
                )
                act.result = res.detail
                if not res.ok:
                    raise _StepFailed(f"database connection check failed: {res.detail}")
        except _StepFailed as e:
            act.state = ActionState.FAILED
            act.result = act.result or str(e)
            self._log(CODEBLUE, f"Failed {act.id}", str(e))
            raise
        except ActivityError as e:
            act.state = ActionState.FAILED
            act.result = _reason(e)
            self._log(CODEBLUE, f"Failed {act.id}", act.result)
            raise _StepFailed(f"{act.id}: {act.result}") from None
        act.state = ActionState.EXECUTED
        self._log(CODEBLUE, f"Executed {act.id}", act.result)

    async def _try_resolve(self, r: Resolution) -> bool:
        self._set_phase(Phase.RESOLVING)
        self._log(r.by, "Resolve requested", r.summary)
        pods = await self._read("pod_status", NamespaceQuery(namespace=self.cfg.kubernetes.namespace), PodsReport, "verify pods")
        h = self.cfg.health
        health = await self._read(
            "probe_health",
            HealthProbeRequest(url=h.url, attempts=h.attempts, timeout_seconds=h.timeout_seconds),
            HealthProbeResult,
            "verify health endpoint",
        )
        problems = []
        if pods is None:
            problems.append("pod status unavailable")
        elif pods.not_ready:
            problems.append(f"{len(pods.not_ready)} pods not ready")
        if health is None or not health.ok:
            problems.append("health endpoint not OK" + (f" ({health.successes}/{health.attempts})" if health else ""))
        verified = not problems
        self._log(CODEBLUE, "Health verification " + ("passed" if verified else "failed"), "; ".join(problems) or "pods ready, health endpoint OK")
        if not verified and not r.force:
            self.resolution_outcome = ResolutionResult(
                resolved=False, verified=False, message="not resolved: " + "; ".join(problems)
            )
            self.resolution = None
            self._set_phase(Phase.MITIGATION)
            return False
        self.verified = verified
        self.summary = r.summary
        self.final_status = "resolved" if verified else "resolved_unverified"
        await self._communicate(final=True)
        self._set_phase(Phase.RESOLVED)
        self._log(r.by, "Incident resolved" if verified else "Incident closed unverified (forced)", r.summary)
        self.resolution_outcome = ResolutionResult(
            resolved=True, verified=verified, message=self.final_status
        )
        return True

    # ------------------------------------------------------------ helpers
    async def _read(self, name: str, arg: Any, rtype: type, summary: str) -> Any:
        """A read-only activity; its failure is recorded, never fatal to the incident."""
        try:
            return await workflow.execute_activity(
                name,
                arg,
                result_type=rtype,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(minutes=20),
                retry_policy=READ_RETRY,
                summary=summary,
            )
        except ActivityError as e:
            self._log(CODEBLUE, f"{summary} failed", _reason(e))
            return None

    async def _write(
        self,
        name: str,
        arg: Any,
        rtype: type,
        summary: str,
        timeout_seconds: int = 120,
        heartbeat: bool = False,
    ) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            result_type=rtype,
            start_to_close_timeout=timedelta(seconds=timeout_seconds),
            # a worker that dies mid-step is noticed within this, and the step retried elsewhere
            heartbeat_timeout=timedelta(seconds=HEARTBEAT_TIMEOUT_SECONDS) if heartbeat else None,
            retry_policy=WRITE_RETRY,
            summary=summary,
        )

    async def _notify(self, name: str, arg: Any, summary: str) -> Delivery | None:
        try:
            d: Delivery = await workflow.execute_activity(
                name,
                arg,
                result_type=Delivery,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
                summary=summary,
            )
        except ActivityError as e:
            self._log(CODEBLUE, f"{summary} failed", _reason(e))
            return None
        if d.skipped:
            self._log(CODEBLUE, f"{summary} skipped", d.detail)
        else:
            self._log(CODEBLUE, summary, d.detail or "delivered")
        return d

    async def _page(self, who: Audience, key: str, text: str) -> None:
        contacts = self.cfg.contacts
        contact = {
            Audience.ON_CALL: contacts.on_call,
            Audience.ENGINEERING_MANAGER: contacts.engineering_manager,
            Audience.DEVOPS_LEAD: contacts.devops_lead,
            Audience.SECURITY: contacts.security,
            Audience.COMMANDER: self.commander or contacts.on_call,
        }[who]
        await self._notify(
            "page",
            PageRequest(
                incident_id=self.inp.incident_id,
                audience=who,
                contact=contact,
                severity=self.severity.value,
                summary=text,
                dedup_key=f"{self.inp.incident_id}:{who.value}:{key}",
            ),
            f"Page {who.value.replace('_', ' ')}",
        )

    def _t(self) -> float:
        return round((workflow.now() - self.started).total_seconds(), 3)

    def _log(self, actor: str, event: str, result: str | None = None, at: float | None = None) -> None:
        when = self._t() if at is None else at
        self.timeline.append(TimelineEntry(at_seconds=when, actor=actor, event=event, result=result))
        workflow.logger.info("%s: %s", event, result or "")

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self._upsert()

    def _upsert(self) -> None:
        workflow.upsert_search_attributes(
            [
                sa.SEVERITY.value_set(self.severity.value),
                sa.PHASE.value_set(self.phase.value),
                sa.SERVICE.value_set(self.inp.service),
                sa.COMMANDER.value_set(self.commander or "unassigned"),
            ]
        )
        self._details()

    def _details(self) -> None:
        lines = [
            f"**{self.severity.value} · {self.phase.value}** — {self.inp.title}",
            f"IC: {self.commander or '_unassigned_'}",
        ]
        for c in self.sla.values():
            state = "running" if c.met is None else ("met" if c.met else "**missed**")
            lines.append(f"- SLA {c.name} {_mmss(c.due_seconds)}: {state}")
        for a in self.actions.values():
            lines.append(f"- `{a.id}` {a.kind.value}: {a.state.value}")
        workflow.set_current_details("\n".join(lines))

    def _report(self) -> IncidentReport:
        return IncidentReport(
            incident_id=self.inp.incident_id,
            title=self.inp.title,
            severity=self.severity,
            service=self.inp.service,
            status=self.final_status,
            phase=self.phase,
            commander=self.commander,
            started_at=self.started.isoformat(),
            sla=list(self.sla.values()),
            actions=list(self.actions.values()),
            timeline=list(self.timeline),
            summary=self.summary,
            verified=self.verified,
            assessment=self.assessment.model_dump() if self.assessment else {},
        )


def _mmss(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def _reason(e: BaseException) -> str:
    """The innermost readable message of an activity failure."""
    cur: BaseException | None = e
    msg = str(e)
    while cur is not None:
        if str(cur):
            msg = str(cur)
        cur = cur.__cause__
    return msg.splitlines()[0][:300] if msg else type(e).__name__
