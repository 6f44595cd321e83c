"""P0/P1 incident response: the runbook's clock and checklist as one durable workflow.

One workflow per incident (workflow ID = incident ID). SLAs are durable timers raced
against the work; nothing that changes production runs without the IC's decision;
approved actions run as a saga whose compensations undo them in reverse on failure.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, WorkflowAlreadyStartedError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.helm import HelmActivities
    from activities.kubernetes import KubernetesActivities
    from activities.notify import NotifierActivities
    from domain import search_attributes as sa
    from domain.action_params import (
        DbCheckParams,
        HelmRollbackParams,
        PlaybookParams,
        RolloutRestartParams,
        ScaleUpParams,
    )
    from domain.alerts import ALERT_PREFIX, AlertBatch, AlertLedger, AlertNotice
    from domain.assessment import Assessment, Diagnostics, Evidence, assess, propose, rank
    from domain.cluster import (
        HelmQuery,
        HelmRollbackRequest,
        NamespaceQuery,
        ScaleRequest,
        ScaleResult,
    )
    from domain.config import CodeBlueConfig
    from domain.db_connections import DbConnectionsInput, db_connections_workflow_id
    from domain.high_memory import MemoryInput, memory_workflow_id
    from domain.identity import UNVERIFIED, person
    from domain.incident import (
        MOVED_TYPES,
        Action,
        ActionKind,
        ActionState,
        CommanderAssignment,
        Escalation,
        IncidentCarry,
        IncidentInput,
        IncidentReport,
        Note,
        Phase,
        ProposalWatch,
        Resolution,
        ResolutionResult,
        SlaClock,
        Undo,
    )
    from domain.notes import NoteLedger
    from domain.notify import Audience, Delivery, MessageRequest, StatusPageRequest, public_text, public_title
    from domain.post_incident import Reopen
    from domain.redis_cache import CacheInput, cache_workflow_id
    from domain.service_recovery import RecoveryInput, recovery_workflow_id
    from domain.severity import Severity
    from domain.slack import SlackShown
    from workflows import metrics
    from workflows.analysis import read_slis
    from workflows.approvals import ApprovalBook, ApprovalHandlers, settle
    from workflows.post_incident_start import start_own_post_incident
    from workflows.recheck import recheck_health, recheck_slis
    from workflows.runbook_steps import (
        StepFailed,
        db_check,
        gateway_logs,
        helm_rollback,
        helm_rollback_undo,
        restart_and_wait,
        verify_health,
    )
    from workflows.saga import Saga
    from workflows.slack_sync import SlackSync
    from workflows.steps import A, Activity, R, Steps, activity_name
    from workflows.timeline import CODEBLUE, Timeline
    from workflows.timeline import mmss as _mmss
    from workflows.timeline import reason as _reason

MAX_PLAYBOOK_RUNS = 50
# the steps after which the evidence is read again (a check or a playbook start changes nothing)
CHANGES_PRODUCTION = frozenset({ActionKind.HELM_ROLLBACK, ActionKind.SCALE_UP, ActionKind.ROLLOUT_RESTART})

# an alert's summary on the timeline (the rest stays with Alertmanager): keeps the report bounded
ALERT_SUMMARY_LISTED = 200

# a mutating step refused because production is no longer what the IC approved acting on
MOVED = MOVED_TYPES


def _moved(e: ActivityError) -> dict[str, Any] | None:
    """The facts a "moved" refusal carries (its first detail), or None for any other failure."""
    cause = e.cause
    if isinstance(cause, ApplicationError) and cause.type in MOVED:
        d = cause.details[0] if cause.details else {}
        return d if isinstance(d, dict) else {}
    return None


@workflow.defn
class IncidentResponseWorkflow(ApprovalHandlers):
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        # a continued run's state is restored here, before any update in its first task is
        # validated; if its start is then refused, run() starts over from nothing
        self._fresh(inp)
        if inp.carried is not None:
            self._restore(inp.carried)

    def _fresh(self, inp: IncidentInput) -> None:
        self.inp = inp
        self.cfg = CodeBlueConfig()  # the worker's, once run() has read it
        self.severity: Severity = inp.severity
        self.phase = Phase.OPEN
        self.started = workflow.info().start_time
        self.tl = Timeline(self.started)
        self.book = ApprovalBook(self.tl, lambda: self.cfg.mitigation.approvers, lambda: self.cfg.mitigation.two_person)
        self.book.commander = inp.commander
        self.steps = Steps(self.tl, inp.incident_id, lambda: self.cfg.contacts)
        self.sla: dict[str, SlaClock] = {}
        self.assessment: Assessment | None = None
        self.status_page_opened = False
        self.resolution: Resolution | None = None
        self.resolution_outcome: ResolutionResult | None = None
        self.final_status = "open"
        self.verified: bool | None = None
        self.summary: str | None = None
        self.public_summary: str | None = None
        self.postmortem_id: str | None = None
        self.diagnostics: Diagnostics | None = None
        self.escalations: list[Escalation] = []
        self.watcher: asyncio.Task[None] | None = None
        self.handing_over = False  # continue-as-new is near: background work stops at a step boundary
        self.alerts = AlertLedger()
        self.saga = Saga(self.tl, self._run_undo)  # every executed mitigation, whatever its batch
        self.notes = NoteLedger()
        self.slack = SlackSync(inp.incident_id, self.book, lambda: self.tl, lambda: self.severity.value,
                               lambda: self.final_status != "open")
        self.watch: ProposalWatch | None = None  # the waiting proposals' reminder clock
        self.runs = 1

    def _restore(self, c: IncidentCarry) -> None:
        """Pick up where the previous run stopped: same clocks, timeline, proposals and saga."""
        self.runs = c.runs
        self.started = datetime.fromisoformat(c.started_at)
        self.tl = Timeline(self.started)
        self.tl.entries = list(c.timeline)
        self.tl.unverified = c.unverified
        self.book.timeline = self.tl
        self.steps.timeline = self.tl
        self.saga.timeline = self.tl
        self.severity, self.phase = c.severity, c.phase
        self.book.commander = c.commander
        self.sla = {k.name: k for k in c.sla}
        self.book.actions = {a.id: a for a in c.actions}
        self.book.proposed_at = dict(c.proposed_at)
        self.assessment = Assessment.model_validate(c.assessment) if c.assessment else None
        self.status_page_opened = c.status_page_opened
        self.escalations = list(c.escalations)
        self.saga.steps = [(self.book.actions[u.action_id], u) for u in c.saga if u.action_id in self.book.actions]
        self.watch = c.watch
        self.slack.shown = {k: SlackShown.model_validate(v) for k, v in c.slack.items()}
        self.slack.off = c.slack_off
        self.alerts.restore(c.alerts)
        self.notes.restore(c.notes)

    def _history_full(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() >= self.cfg.limits.continue_as_new_after_events
        )

    async def _hand_over(self) -> bool:
        """Before continue-as-new, the proposal watcher and the Slack sync stop at a step
        boundary (a page or a post in flight completes) instead of being cancelled: cancelled,
        one could go on in the same activation (a reminder timer firing, a cancelled post ending
        as an activity error) and schedule an activity after ContinueAsNew, and the server
        refused every completion of that task, so the incident stopped. False: something came
        in meanwhile; the run goes on, its watcher and sync restarted."""
        self.handing_over = True  # the watcher's predicate sees nothing waiting: it returns
        watcher = [self.watcher] if self.watcher is not None and not self.watcher.done() else []
        await asyncio.gather(*watcher, self.slack.hand_over(), return_exceptions=True)
        await workflow.wait_condition(self._handlers_done_or_work)
        if self.resolution is None and not self._wants_mitigation():
            return True
        self.handing_over = False
        if self.watch is not None and self.book.pending():
            self.watcher = asyncio.ensure_future(self._watch_proposals(self.watch.round_key, self.watch))
        self.slack.resume()
        return False

    def _handlers_done_or_work(self) -> bool:
        return workflow.all_handlers_finished() or self.resolution is not None or self._wants_mitigation()

    def _watching(self) -> bool:
        return self._undecided() and not self.handing_over

    def _continue_as_new(self) -> None:
        if self.watcher and not self.watcher.done():
            self.watcher.cancel()  # its deadlines travel in `watch`
        self.slack.stop()  # what each message shows travels in `slack`
        self._log(CODEBLUE, "Continued as new",
                  f"run {self.runs + 1}; history had {workflow.info().get_current_history_length()} events")
        carry = IncidentCarry(
            runs=self.runs + 1,
            started_at=self.started.isoformat(),
            severity=self.severity,
            phase=self.phase,
            commander=self.commander,
            sla=list(self.sla.values()),
            timeline=list(self.tl.entries),
            actions=list(self.actions.values()),
            proposed_at=dict(self.book.proposed_at),
            assessment=self.assessment.model_dump(mode="json") if self.assessment else None,
            status_page_opened=self.status_page_opened,
            escalations=list(self.escalations),
            saga=self.saga.records(),
            watch=self.watch if self.book.pending() else None,
            slack={k: v.model_dump(mode="json") for k, v in self.slack.shown.items()},
            slack_off=self.slack.off,
            alerts=self.alerts.to_state(),
            notes=self.notes.to_state(),
            unverified=self.tl.unverified,
        )
        workflow.continue_as_new(self.inp.model_copy(update={"carried": carry}))

    @property
    def commander(self) -> str | None:
        return self.book.commander

    @property
    def actions(self) -> dict[str, Action]:
        return self.book.actions

    # ---------------------------------------------------------------- run
    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentReport:
        self.cfg = await self.steps.worker_config(inp)
        if inp.start_proof and inp.incident_id.startswith(ALERT_PREFIX) and "alerts" not in inp.requested_roles:
            inp.start_refused = f"incident IDs starting {ALERT_PREFIX} are the alert path's"
        if inp.start_refused:  # worker.identity found no valid proof: page nobody, touch nothing
            if inp.carried is not None:  # a carry no earlier run proved it made: none of it counts
                self._fresh(inp.model_copy(update={"carried": None}))
            self._log(UNVERIFIED, "Incident start refused: unauthenticated", inp.start_refused)
            self.final_status = "refused"
            raise ApplicationError(f"start refused: {inp.start_refused}", type="StartRefused", non_retryable=True)
        try:
            return await self._respond(inp)
        except asyncio.CancelledError:
            # a cancelled incident leaves production as it found it: every undo runs to its end
            if self.saga.steps:
                self._log(CODEBLUE, "Incident cancelled; undoing every executed mitigation, newest first")
                await self.saga.compensate()
            raise

    async def _respond(self, inp: IncidentInput) -> IncidentReport:
        self.notes.listed_max = self.cfg.limits.notes_listed_max
        self.notes.per_minute = self.cfg.limits.notes_per_actor_per_minute
        if inp.carried is not None:  # a continued run: the incident is mid-mitigation
            self._upsert()
            w = inp.carried.watch
            if w is not None and self.book.pending():
                self.watcher = asyncio.ensure_future(self._watch_proposals(w.round_key, w))
            if self.slack.shown:
                self.slack.start()
            return await self._until_resolved()
        self._log(
            inp.requested_by,
            "Incident opened",
            f"{inp.title} ({self.severity.value}, service {inp.service}, IC {self.commander or 'unassigned'})",
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
        return await self._until_resolved()

    async def _until_resolved(self) -> IncidentReport:
        while True:
            await workflow.wait_condition(
                lambda: self.resolution is not None or self._wants_mitigation() or self._history_full()
            )
            if self.resolution is None and self._wants_mitigation():
                await self._mitigate()
                continue
            if self.resolution is None:  # the history is full: let handlers finish, then go on anew
                # an update that waits on this loop (resolve, decide) is served first
                await workflow.wait_condition(self._handlers_done_or_work)
                if self.resolution is None and not self._wants_mitigation():
                    if not await self._hand_over():
                        continue
                    self._continue_as_new()
                continue
            if await self._try_resolve(self.resolution):
                break
        if self.watcher and not self.watcher.done():
            self.watcher.cancel()
        await self.slack.finish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._report()

    # ------------------------------------------------------- queries/updates
    @workflow.query
    def status(self) -> IncidentReport:
        return self._report()

    @workflow.signal
    def assign_commander(self, a: CommanderAssignment) -> None:
        if self.commander and person(a.by) not in (person(self.commander), *self.cfg.mitigation.approvers):
            self._log(a.by, "Commander change ignored", f"only {self.commander} or an approver may hand over")
            return
        self.book.commander = a.commander
        self._log(a.by, "Incident commander assigned", a.commander)
        self._upsert()

    @workflow.signal
    def escalate(self, e: Escalation) -> None:
        self._escalate(e)

    def _escalate(self, e: Escalation) -> None:
        if e.severity.rank >= self.severity.rank:
            self._log(e.by, "Escalation ignored", f"{e.severity.value} is not above {self.severity.value}")
            return
        old, self.severity = self.severity, e.severity
        self._log(e.by, f"Escalated {old.value} -> {e.severity.value}", e.reason or None)
        self._upsert()
        self.escalations.append(e)

    @workflow.signal
    def add_note(self, n: Note) -> None:
        """What a responder saw or did, on the timeline beside CodeBlue's own steps; past the
        cap counted, beyond an actor's rate dropped (and counted), so the report stays bounded."""
        verdict = self.notes.admit(person(n.by), self._t())
        if verdict == "list":
            self._log(n.by, "Note", n.text)
        elif verdict == "rate_limited" and self.notes.first_warning(person(n.by)):
            self._log(CODEBLUE, "Notes rate-limited", f"{person(n.by)}: more than {self.notes.per_minute} a minute are dropped "
                      "(counted in the report's notes)")
        elif verdict == "unlisted" and self.notes.unlisted == 1:
            self._log(CODEBLUE, "Note flood: further notes are counted, not listed",
                      f"{self.notes.listed} listed; see the report's note counts")

    @workflow.signal
    def reopen(self, r: Reopen) -> None:
        """Post-incident verification failed while this incident is still open: say so."""
        self._log(r.by, "Post-incident verification failed", r.reason)

    @workflow.signal
    def add_alert(self, a: AlertNotice) -> None:
        """An alert for this incident's dedup key (signal-with-start from the API); never resolves."""
        if not self.alerts.is_new(a):
            return  # a re-sent alert: already on the timeline
        sev = next((s for s in Severity if s.value == a.severity), None)
        if a.status == "firing" and sev is not None and sev.rank < self.severity.rank:  # a worse alert joined
            self._escalate(Escalation(severity=sev, by=a.received_by, reason=f"alert {a.alertname[:200]} is {sev.value}"))
        if not self.alerts.to_list():
            if self.alerts.unlisted == 1:
                self._log(CODEBLUE, "Alert flood: further alerts are counted, not listed",
                          f"{self.alerts.listed} listed; see the report's alert counts")
            return
        what = "firing" if a.status == "firing" else "resolved (recorded; the IC resolves)"
        summary = a.summary[:ALERT_SUMMARY_LISTED]
        self._log(a.received_by, f"Alert {what}: {a.alertname}", summary or None)

    @workflow.signal
    def add_alerts(self, batch: AlertBatch) -> None:
        """Alerts the API spooled, delivered per key in batches: one workflow task for many."""
        for a in batch.notices:
            self.add_alert(a)

    def _decided(self) -> None:
        self._details()

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
    def _resolution_problem(self, r: Resolution) -> str | None:
        problem = self.book.authority_problem(r.by)
        if problem:
            return problem
        if self.resolution is not None and self.resolution_outcome is None:
            return "a resolution is already being verified"
        return None

    # ------------------------------------------------------------ phases
    async def _diagnostics(self) -> Diagnostics:
        k = self.cfg.kubernetes
        ns = NamespaceQuery(namespace=k.namespace)
        pods, services, logs = await asyncio.gather(
            self._read(KubernetesActivities.pod_status, ns, "kubectl get pods"),
            self._read(KubernetesActivities.service_status, ns, "kubectl get services"),
            gateway_logs(self.steps, k, f"kubectl logs deployment/{k.gateway_deployment}"),
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

    async def _assess_after(self, diag_task: asyncio.Future[Diagnostics]) -> Assessment:
        diag = await diag_task
        if self.phase == Phase.DIAGNOSTICS:
            self._set_phase(Phase.ASSESSMENT)
        k = self.cfg.kubernetes
        ns = NamespaceQuery(namespace=k.namespace)
        h = self.cfg.health
        deployments, metrics, helm, health, slis = await asyncio.gather(
            self._read(KubernetesActivities.deployment_status, ns, "deployments"),
            self._read(KubernetesActivities.pod_metrics, ns, "kubectl top pods"),
            self._read(
                HelmActivities.helm_history,
                HelmQuery(release=self.cfg.helm.release, namespace=k.namespace),
                "helm history",
            ),
            verify_health(self.steps, h, "health endpoint probe"),
            read_slis(self.steps, self.inp.incident_id, "SLIs from Prometheus", since=self.started.isoformat()),
        )
        ev = Evidence(deployments=deployments, metrics=metrics, helm=helm, health=health, slis=slis)
        a = assess(diag, ev, self.cfg, self.started)
        self.assessment = a
        self._log(CODEBLUE, "Assessment complete", " | ".join(a.summary_lines()))
        return a

    def _propose(self) -> None:
        if self.actions or self.assessment is None:
            return
        acts = propose(self.assessment, self.cfg)
        rank(self.assessment, acts)  # sets rank/recommended; the proposal order stays
        for act in acts:
            self.book.propose(act)
        if not self.actions:
            self._log(CODEBLUE, "No mitigation proposed", "the evidence points at no runbook action")
        else:
            best = next((a for a in acts if a.recommended), None)
            self._log(
                CODEBLUE,
                "Waiting for the IC's decisions",
                f"IC {self.commander or 'unassigned'}: approve or reject "
                + ", ".join(self.actions)
                + "; an approved action runs at once"
                + (f"; recommended: {best.id} ({best.recommendation})" if best else ""),
            )
            self.watcher = asyncio.ensure_future(self._watch_proposals())
            self.slack.start()
        self._details()

    def _undecided(self) -> bool:
        return self.final_status == "open" and self.resolution is None and not self.book.all_decided()

    async def _watch_proposals(self, round_key: str = "", resume: ProposalWatch | None = None) -> None:
        """Remind the IC, then page the engineering manager; never decide for them. A later
        round of proposals (`round_key`) pages under its own dedup keys; a continued run
        `resume`s the clock, so the deadlines stay where they were."""
        suffix = f"-{round_key}" if round_key else ""
        w = resume or ProposalWatch(round_key=round_key, since_seconds=self._t())
        self.watch = w

        async def remind(pending: list[str]) -> None:
            w.reminded = True
            self._log("sla", "Proposals waiting; reminding the IC", ", ".join(pending))
            await self._page(Audience.COMMANDER, f"reminder{suffix}", f"Decision needed on {', '.join(pending)}: {self.inp.title}")

        async def escalate(pending: list[str]) -> None:
            self._log("sla", "Proposals still waiting; paging engineering manager", ", ".join(pending))
            await self._page(
                Audience.ENGINEERING_MANAGER, f"decisions-waiting{suffix}",
                f"IC decision pending on {', '.join(pending)}: {self.inp.title}",
            )

        m = self.cfg.mitigation
        await self.book.wait_with_reminders(
            self._watching, m.remind_after_seconds, m.escalate_after_seconds, remind, escalate,
            elapsed=self._t() - w.since_seconds, reminded=w.reminded,
        )

    async def _race_sla(self, name: str, task: asyncio.Future[Any]) -> None:
        clock = self.sla.get(name)
        if clock is None:  # light path: no SLA, just the work
            await task
            return
        remaining = clock.due_seconds - self._t()
        try:
            if remaining <= 0:
                raise TimeoutError
            await workflow.wait_condition(
                lambda: task.done(),
                timeout=timedelta(seconds=remaining),
                timeout_summary=f"SLA {name} {_mmss(clock.due_seconds)}",
            )
            clock.met = True
            clock.done_seconds = self._t()
            metrics.sla_recorded(clock, self.severity)
            self._log("sla", f"SLA met: {name}", f"at {_mmss(clock.done_seconds)} (due {_mmss(clock.due_seconds)})")
        except TimeoutError:
            clock.met = False
            metrics.sla_recorded(clock, self.severity)  # counted at the due instant, not at close
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
        """Public text only: the title and the IC's internal summary may hold patient data."""
        service = self.inp.service
        a = self.assessment
        known = " | ".join(a.summary_lines()) if a else "assessment still running"
        public = self.public_summary if final else self.inp.public_summary
        if self.severity.is_major:
            sp = await self._notify(
                NotifierActivities.status_page,
                StatusPageRequest(
                    incident_id=self.inp.incident_id,
                    title=public_title(service),
                    status="resolved" if final else "investigating",
                    message=public_text("resolved" if final else "investigating", service, public),
                    impact="critical" if self.severity == Severity.P0 else "major",
                ),
                "Update status page",
            )
            self.status_page_opened = self.status_page_opened or bool(sp and sp.delivered)
        text = (
            f"[{self.severity.value}] {public_title(service)} resolved: {public_text('resolved', service, public)}"
            if final
            else f"[{self.severity.value}] {public_title(service)}. IC: {self.commander or 'unassigned'}. {known}"
            + (f" {public}" if public else "")
            + (" Dashboards: " + ", ".join(f"{k}: {v}" for k, v in a.dashboards.items()) if a and a.dashboards else "")
        )
        await self._notify(
            NotifierActivities.post_message,
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
                NotifierActivities.post_message,
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
            metrics.sla_recorded(clock, self.severity)
            self._log("sla", f"SLA {'met' if clock.met else 'missed'}: communication", f"at {_mmss(clock.done_seconds)}")

    def _wants_mitigation(self) -> bool:
        if self.escalations:
            return True
        return bool(self.book.approved())

    async def _mitigate(self) -> None:
        """Run approved actions in the order the IC approved them, in the incident's one saga:
        a failure undoes every executed mitigation, newest first."""
        while self.escalations:
            e = self.escalations.pop(0)
            await self._page(Audience.ON_CALL, f"escalate-{e.severity.value}", f"Escalated to {e.severity.value}: {self.inp.title}")
            if self.severity.is_major and not self.status_page_opened:
                await self._communicate(final=False)
            if self.severity.is_major:
                self._propose()
        approved = self.book.approved()
        if not approved:
            return
        approved.sort(key=lambda a: a.decided_at_seconds or 0.0)
        saga = self.saga
        try:
            for act in approved:
                await self._execute(act, saga)
                if act.state == ActionState.EXECUTED and act.kind in CHANGES_PRODUCTION:
                    await self._recheck(act)
        except StepFailed as e:
            self._log(CODEBLUE, "Mitigation failed; compensating in reverse", str(e))
            await saga.compensate()
            for act in approved:
                if act.state == ActionState.APPROVED:
                    settle(act, ActionState.FAILED, "not run: an earlier step failed")
            await self._page(
                Audience.ENGINEERING_MANAGER, "mitigation-failed", f"Mitigation failed and was rolled back: {self.inp.title}"
            )
        self._details()

    async def _recheck(self, after: Action) -> None:
        """After a mitigation: pods, health and logs again. Healthy: the proposals still
        waiting are moot and withdrawn (no reminder, no page for them); else they stay."""
        problems, logs = await recheck_health(self.steps, self.cfg)
        await recheck_slis(self.steps, self.tl, self.cfg, self.inp.incident_id, self.assessment, after.id)
        errors = logs.error_counts if logs else {}
        pending = self.book.pending()
        if problems:
            self._log(CODEBLUE, f"Re-checked after {after.id}: still unhealthy",
                      "; ".join(problems) + (f"; still waiting: {', '.join(pending)}" if pending else ""))
            return
        why = f"after {after.id}: pods ready, health endpoint OK, log errors {errors}"
        self._log(CODEBLUE, f"Re-checked after {after.id}: healthy", why)
        for aid in pending:
            act = self.actions[aid]
            act.state = ActionState.SUPERSEDED
            act.result = f"superseded: {why}"
        if pending:
            self._log(CODEBLUE, "Withdrawn as superseded", f"{', '.join(pending)}: the evidence no longer calls for them")

    async def _run_undo(self, u: Undo) -> None:
        await self.steps.undo(u)

    async def _execute(self, act: Action, saga: Saga) -> None:
        self._log(CODEBLUE, f"Executing {act.id} ({act.kind.value})", act.reason)
        try:
            if act.kind == ActionKind.HELM_ROLLBACK:
                await self._rollback(act, saga)
            elif act.kind == ActionKind.SCALE_UP:
                await self._scale(act, saga)
            elif act.kind == ActionKind.ROLLOUT_RESTART:
                r = act.params_as(RolloutRestartParams)
                ns, dep = r.namespace or self.cfg.kubernetes.namespace, r.deployment
                act.compensation = "none needed (a restart changes no configuration)"
                st = await restart_and_wait(self.steps, ns, dep, self.cfg.mitigation.rollout_timeout_seconds,
                                            expected_revision=r.revision)
                act.result = f"restarted; {st.available}/{st.desired} available"
            elif act.kind == ActionKind.PLAYBOOK:
                playbook = act.params_as(PlaybookParams).workflow
                try:
                    cid = await self._start_playbook(playbook)
                except FailureError as e:  # the start itself was refused: this step failed, the incident goes on
                    raise StepFailed(f"could not start {playbook}: {_reason(e)}") from None
                act.compensation = "none here: the playbook keeps its own compensations"
                act.result = f"started {cid}; the IC decides its steps there"
            elif act.kind == ActionKind.DB_CHECK:
                target = act.params_as(DbCheckParams)
                res = await db_check(self.steps, self.cfg, target.namespace, target.deployment, "database connection check")
                act.result = res.detail
                if not res.ok:
                    raise StepFailed(f"database connection check failed: {res.detail}")
        except StepFailed as e:
            settle(act, ActionState.FAILED, act.result or str(e))
            self._log(CODEBLUE, f"Failed {act.id}", str(e))
            raise
        except ActivityError as e:
            moved = _moved(e)
            if moved is not None:
                saga.forget(act)  # refused before it changed anything
                settle(act, ActionState.SUPERSEDED, _reason(e))
                self._log(CODEBLUE, f"Not run {act.id}: the world moved since the decision", _reason(e))
                self._repropose(act, moved)
                return
            settle(act, ActionState.FAILED, _reason(e))
            self._log(CODEBLUE, f"Failed {act.id}", act.result)
            raise StepFailed(f"{act.id}: {act.result}") from None
        settle(act, ActionState.EXECUTED)
        self._log(CODEBLUE, f"Executed {act.id}", act.result)

    async def _rollback(self, act: Action, saga: Saga) -> None:
        p = act.params_as(HelmRollbackParams)
        req = HelmRollbackRequest(
            release=p.release,
            namespace=p.namespace,
            from_revision=p.from_revision,
            to_revision=p.to_revision,
            timeout_seconds=self.cfg.helm.timeout_seconds,
        )
        # registered before it runs: the rollback may fail mid-way
        undo = helm_rollback_undo(act.id, req)
        saga.register(act, undo, f"helm rollback {req.release} {req.from_revision} (back to where it was)")
        res = await helm_rollback(self.steps, req, f"helm rollback to {req.to_revision}")
        # the undo only acts while the release is still at the revision this rollback made
        undo.arg["from_revision"] = res.new_revision
        act.result = f"revision {res.from_revision} -> {res.to_revision} (new revision {res.new_revision})"
        if res.already_done:
            act.result += "; found done by an earlier attempt, not repeated"

    async def _scale(self, act: Action, saga: Saga) -> None:
        p = act.params_as(ScaleUpParams)
        ns, dep, n = p.namespace, p.deployment, p.replicas
        seen = p.from_replicas
        if seen is None:
            current = await self._read(KubernetesActivities.deployment_status, NamespaceQuery(namespace=ns), "read replicas")
            seen = next((d.desired for d in (current.deployments if current else []) if d.name == dep), None)
            if seen is None:
                raise StepFailed(f"cannot read the current replica count of {dep}")
        undo = Undo(
            action_id=act.id,
            activity=activity_name(KubernetesActivities.scale_deployment),
            # back to the count the step found, only while the deployment is still at ours
            arg=ScaleRequest(namespace=ns, deployment=dep, replicas=seen,
                             expected_replicas=n).model_dump(mode="json", exclude_none=True),
            summary=f"compensate: scale {dep} to {seen}",
        )
        saga.register(act, undo, f"scale {dep} back to {seen} replicas")
        res: ScaleResult = await self._write(
            KubernetesActivities.scale_deployment,
            ScaleRequest(namespace=ns, deployment=dep, replicas=n, expected_replicas=seen),
            f"scale {dep} to {n}",
        )
        act.result = f"{dep} scaled {res.previous_replicas} -> {res.replicas}"

    def _repropose(self, act: Action, facts: dict[str, Any]) -> None:
        """The world moved between the IC's decision and the step: propose it again with
        the facts as they are now; the IC decides again."""
        p = dict(act.params)
        base = re.sub(r"-\d+$", "", act.id)
        n = 2
        while f"{base}-{n}" in self.actions:
            n += 1
        new_id = f"{base}-{n}"
        # read through the kind's model; the new proposal's params stay a dict with one fact updated
        if act.kind == ActionKind.HELM_ROLLBACK:
            rb = act.params_as(HelmRollbackParams)
            cur = facts.get("current_revision")
            if cur == rb.to_revision:
                self._log(CODEBLUE, f"Withdrawn {act.id}", f"the release is already at revision {cur}")
                return
            p["from_revision"] = cur
            why = (f"release {rb.release} moved to revision {cur} after the decision on {act.id}; "
                   f"roll it back to revision {rb.to_revision} only if revision {cur} did not fix it")
        elif act.kind == ActionKind.SCALE_UP:
            sc = act.params_as(ScaleUpParams)
            cur = facts.get("current_replicas")
            if cur is not None and cur >= sc.replicas:
                self._log(CODEBLUE, f"Withdrawn {act.id}", f"{sc.deployment} already runs {cur} replicas")
                return
            p["from_replicas"] = cur
            why = f"{sc.deployment} was scaled to {cur} replicas after the decision on {act.id}; scale to {sc.replicas}"
        else:  # a rollout restart: the only other step with a precondition
            dep = act.params_as(RolloutRestartParams).deployment
            cur = facts.get("current_revision")
            p["revision"] = cur
            why = f"{dep} rolled out revision {cur} after the decision on {act.id}; restart its pods again?"
        self.book.propose(Action(id=new_id, kind=act.kind, reason=why, params=p))
        if self.watcher is None or self.watcher.done():
            self.watcher = asyncio.ensure_future(self._watch_proposals(round_key=new_id))

    async def _start_playbook(self, name: str) -> str:
        """A runbook playbook as a child that outlives this incident (it has its own IC gates)."""
        common = {
            "incident_id": self.inp.incident_id,
            "requested_by": CODEBLUE,
            "commander": self.commander,
            "severity": self.severity,
        }
        builders = {
            "ServiceRecoveryWorkflow": (RecoveryInput, recovery_workflow_id),
            "HighMemoryPlaybook": (MemoryInput, memory_workflow_id),
            "RedisCachePlaybook": (CacheInput, cache_workflow_id),
            "DatabaseConnectionPlaybook": (DbConnectionsInput, db_connections_workflow_id),
        }
        if name not in builders:
            raise StepFailed(f"unknown playbook {name}")
        model, child_id = builders[name]
        base = child_id(self.inp.incident_id)
        # A recurring alert key runs the same incident ID again while an earlier run's playbook
        # may still be open: each run's playbook gets the next free `<base>[-N]`, never reused.
        for ordinal in range(1, MAX_PLAYBOOK_RUNS + 1):
            cid = base if ordinal == 1 else f"{base}-{ordinal}"
            try:
                await workflow.start_child_workflow(
                    name, model(**common), id=cid, parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"{name} for {self.inp.incident_id}",
                )
            except WorkflowAlreadyStartedError:
                continue  # an earlier run's (or one started by hand): take the next
            if ordinal > 1:
                self._log(CODEBLUE, f"{base} is taken", f"by an earlier run of {self.inp.incident_id} or by hand; started {cid}")
            return cid
        raise StepFailed(f"{base} .. {base}-{MAX_PLAYBOOK_RUNS} all exist; start one by hand")

    async def _try_resolve(self, r: Resolution) -> bool:
        self._set_phase(Phase.RESOLVING)
        self._log(r.by, "Resolve requested", r.summary)
        pods = await self._read(KubernetesActivities.pod_status, NamespaceQuery(namespace=self.cfg.kubernetes.namespace), "verify pods")
        h = self.cfg.health
        health = await verify_health(self.steps, h, "verify health endpoint")
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
        self.public_summary = r.public_summary
        self.final_status = "resolved" if verified else "resolved_unverified"
        await self._communicate(final=True)
        self._set_phase(Phase.RESOLVED)
        self._log(r.by, "Incident resolved" if verified else "Incident closed unverified (forced)", r.summary)
        wid = await start_own_post_incident(self._report(), self.commander)  # one post-mortem per run
        if wid:
            self.postmortem_id = wid
            self._log(CODEBLUE, "Post-incident started", f"{wid}: verification, closing comms, post-mortem within 24 h")
        else:
            self._log(CODEBLUE, "Post-incident could not start",
                      f"start it by hand: codeblue postmortem start {self.inp.incident_id}")
        self.resolution_outcome = ResolutionResult(
            resolved=True, verified=verified, message=self.final_status
        )
        return True

    # ------------------------------------------------------------ helpers
    async def _read(self, activity: Activity[A, R], arg: A, summary: str) -> R | None:
        return await self.steps.read(activity, arg, summary)

    async def _write(
        self, activity: Activity[A, R], arg: A, summary: str, timeout_seconds: int = 120, heartbeat: bool = False
    ) -> R:
        return await self.steps.write(activity, arg, summary, timeout_seconds, heartbeat)

    async def _notify(self, activity: Activity[A, Delivery], arg: A, summary: str) -> Delivery | None:
        return await self.steps.notify(activity, arg, summary)

    async def _page(self, who: Audience, key: str, text: str) -> None:
        await self.steps.page(who, key, text, self.severity.value, self.commander)

    def _t(self) -> float:
        return self.tl.t()

    def _log(self, actor: str, event: str, result: str | None = None, at: float | None = None) -> None:
        self.tl.log(actor, event, result, at)

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
        a = self.assessment
        if a is not None and a.sli_breaches:
            lines.append("- SLIs breached: " + "; ".join(a.sli_breaches))
        if a is not None and a.dashboards:
            lines.append("- Dashboards: " + " · ".join(f"[{k}]({v})" for k, v in a.dashboards.items()))
        for act in sorted(self.actions.values(), key=lambda act: (not act.recommended, act.rank or 999)):
            star = f" — **recommended**: {act.recommendation}" if act.recommended and act.state == ActionState.PROPOSED else ""
            lines.append(f"- `{act.id}` {act.kind.value}: {act.state.value}{star}")
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
            timeline=list(self.tl.entries),
            summary=self.summary,
            public_summary=self.public_summary or self.inp.public_summary,
            postmortem_workflow_id=self.postmortem_id,
            verified=self.verified,
            assessment=self.assessment.model_dump() if self.assessment else {},
            alerts=self.alerts.counts() if self.alerts.received else {},
            notes=self.notes.counts() if self.notes.received else {},
            unverified_commands=self.tl.unverified,
        )

