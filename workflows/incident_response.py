"""P0/P1 incident response: the runbook's clock and checklist as one durable workflow.

One workflow per incident (workflow ID = incident ID). SLAs are durable timers raced
against the work; nothing that changes production runs without the IC's decision;
approved actions run as a saga whose compensations undo them in reverse on failure.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.kubernetes import KubernetesActivities
    from domain import catalog
    from domain.alerts import ALERT_PREFIX, AlertBatch, AlertNotice
    from domain.cluster import (
        NamespaceQuery,
    )
    from domain.identity import UNVERIFIED, person
    from domain.incident import (
        CommanderAssignment,
        Escalation,
        IncidentInput,
        IncidentReport,
        Note,
        Phase,
        Resolution,
        ResolutionResult,
        ServiceNaming,
        SlaClock,
        TimelineKind,
    )
    from domain.notify import Audience
    from domain.post_incident import Reopen
    from domain.severity import Severity
    from workflows.incident.mitigation import Mitigation
    from workflows.post_incident_start import start_own_post_incident
    from workflows.runbook_steps import (
        verify_health,
    )
    from workflows.timeline import CODEBLUE

# an alert's summary on the timeline (the rest stays with Alertmanager): keeps the report bounded
ALERT_SUMMARY_LISTED = 200



@workflow.defn
class IncidentResponseWorkflow(Mitigation):
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        # a continued run's state is restored here, before any update in its first task is
        # validated; if its start is then refused, run() starts over from nothing
        self._fresh(inp)
        if inp.carried is not None:
            self._restore(inp.carried)

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

    def _continue_as_new(self) -> None:
        if self.watcher and not self.watcher.done():
            self.watcher.cancel()  # its deadlines travel in `watch`
        self.slack.stop()  # what each message shows travels in `slack`
        self._log(CODEBLUE, "Continued as new",
                  f"run {self.runs + 1}; history had {workflow.info().get_current_history_length()} events", kind=TimelineKind.CONTINUED)
        workflow.continue_as_new(self.inp.model_copy(update={"carried": self._carry()}))

    # ---------------------------------------------------------------- run
    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentReport:
        self.cfg = await self.steps.worker_config(inp, service=inp.service)  # that service's targets
        if inp.start_proof and inp.incident_id.startswith(ALERT_PREFIX) and "alerts" not in inp.requested_roles:
            inp.start_refused = f"incident IDs starting {ALERT_PREFIX} are the alert path's"
        if inp.start_refused:  # worker.identity found no valid proof: page nobody, touch nothing
            if inp.carried is not None:  # a carry no earlier run proved it made: none of it counts
                self._fresh(inp.model_copy(update={"carried": None}))
            self._log(UNVERIFIED, "Incident start refused: unauthenticated", inp.start_refused, kind=TimelineKind.IGNORED)
            self.final_status = "refused"
            raise ApplicationError(f"start refused: {inp.start_refused}", type="StartRefused", non_retryable=True)
        try:
            return await self._respond(inp)
        except asyncio.CancelledError:
            # a cancelled incident leaves production as it found it: every undo runs to its end
            if self.saga.steps:
                self._log(CODEBLUE, "Incident cancelled; undoing every executed mitigation, newest first", kind=TimelineKind.COMPENSATION)
                await self.saga.compensate()
            await self.steps.resolve_pages(self.severity.value, self.commander)  # none keeps escalating
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
            f"{inp.title} ({self.severity.value}, service {inp.service}, IC {self.commander or 'unassigned'})", kind=TimelineKind.OPENED,
        )
        for reason in inp.severity_reasons:
            self._log(CODEBLUE, "Severity reason", reason, kind=TimelineKind.SEVERITY)
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
    async def assign_commander(self, a: CommanderAssignment) -> None:
        if self.commander and person(a.by) not in (person(self.commander), *self.cfg.mitigation.approvers):
            self._log(a.by, "Commander change ignored", f"only {self.commander} or an approver may hand over", kind=TimelineKind.IGNORED)
            return
        self.book.commander = a.commander
        self._log(a.by, "Incident commander assigned", a.commander, kind=TimelineKind.COMMANDER)
        self._upsert()
        # the IC took the incident: the pages asking someone to take it stop escalating
        await self.steps.acknowledge_pages(self.severity.value, self.commander)

    @workflow.signal
    def escalate(self, e: Escalation) -> None:
        self._escalate(e)

    def _escalate(self, e: Escalation) -> None:
        if e.severity.rank >= self.severity.rank:
            self._log(e.by, "Escalation ignored", f"{e.severity.value} is not above {self.severity.value}", kind=TimelineKind.IGNORED)
            return
        old, self.severity = self.severity, e.severity
        self._log(e.by, f"Escalated {old.value} -> {e.severity.value}", e.reason or None, kind=TimelineKind.ESCALATED)
        self._upsert()
        self.escalations.append(e)

    @workflow.signal
    def add_note(self, n: Note) -> None:
        """What a responder saw or did, on the timeline beside CodeBlue's own steps; past the
        cap counted, beyond an actor's rate dropped (and counted), so the report stays bounded."""
        verdict = self.notes.admit(person(n.by), self._t())
        if verdict == "list":
            self._log(n.by, "Note", n.text, kind=TimelineKind.NOTE)
        elif verdict == "rate_limited" and self.notes.first_warning(person(n.by)):
            self._log(CODEBLUE, "Notes rate-limited", f"{person(n.by)}: more than {self.notes.per_minute} a minute are dropped "
                      "(counted in the report's notes)", kind=TimelineKind.NOTE)
        elif verdict == "unlisted" and self.notes.unlisted == 1:
            self._log(CODEBLUE, "Note flood: further notes are counted, not listed",
                      f"{self.notes.listed} listed; see the report's note counts", kind=TimelineKind.NOTE)

    @workflow.signal
    def reopen(self, r: Reopen) -> None:
        """Post-incident verification failed while this incident is still open: say so."""
        self._log(r.by, "Post-incident verification failed", r.reason, kind=TimelineKind.POST_INCIDENT)

    @workflow.signal
    def add_alert(self, a: AlertNotice) -> None:
        """An alert for this incident's dedup key (signal-with-start from the API); never resolves."""
        if self.alerts.note_truncated(a):
            self._log(a.received_by, f"Alertmanager left {a.group_truncated} alerts of a group out (its max_alerts)",
                      "they are not on this timeline; the report counts them under alerts.truncated",
                      kind=TimelineKind.ALERT)
        if not self.alerts.is_new(a):
            return  # a re-sent alert: already on the timeline
        sev = next((s for s in Severity if s.value == a.severity), None)
        if a.status == "firing" and sev is not None and sev.rank < self.severity.rank:  # a worse alert joined
            self._escalate(Escalation(severity=sev, by=a.received_by, reason=f"alert {a.alertname[:200]} is {sev.value}"))
        if not self.alerts.to_list():
            if self.alerts.unlisted == 1:
                self._log(CODEBLUE, "Alert flood: further alerts are counted, not listed",
                          f"{self.alerts.listed} listed; see the report's alert counts", kind=TimelineKind.ALERT)
            return
        what = "firing" if a.status == "firing" else "resolved (recorded; the IC resolves)"
        summary = a.summary[:ALERT_SUMMARY_LISTED]
        self._log(a.received_by, f"Alert {what}: {a.alertname}", summary or None, kind=TimelineKind.ALERT)

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
            self._log(r.by, "Resolve ignored", problem, kind=TimelineKind.IGNORED)
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

    @workflow.update
    async def name_service(self, n: ServiceNaming) -> str:
        """The catalog service this incident is about, named by its IC: its targets are read
        (the worker's config decides them), then the evidence, then proposals for it."""
        was = self.cfg.unknown_service
        self.naming_service = True
        self.cfg = await self.steps.service_config(n.service)
        self.inp.service = self.steps.service = n.service
        self._log(n.by, f"Service named: {n.service}", f"the catalog does not know {was}; CodeBlue now acts on "
                  f"{n.service}'s targets (namespace {self.cfg.kubernetes.namespace})", kind=TimelineKind.STEP)
        self._upsert()
        await self._assess(await self._diagnostics())
        if self.severity.is_major:
            self._propose()
        self.naming_service = False
        return f"{self.inp.incident_id} is about {n.service}: " + (
            f"proposed {', '.join(self.actions)}" if self.actions else "nothing proposed")

    @name_service.validator
    def _validate_name_service(self, n: ServiceNaming) -> None:
        problem = self.book.authority_problem(n.by)
        if problem is None and self.naming_service:
            problem = "a service is being named already"
        if problem is None and not self.cfg.unknown_service:
            problem = f"this incident's service {self.inp.service} is in the catalog already"
        if problem is None and n.service not in catalog.catalog(self.cfg):
            problem = f"{n.service} is not in the service catalog either (known: {', '.join(sorted(catalog.catalog(self.cfg)))})"
        if problem is None and (self.resolution is not None or self.final_status != "open"):
            problem = "the incident is being resolved"
        if problem:
            raise ApplicationError(problem, type="ServiceRejected")

    # ------------------------------------------------------------ decisions
    def _resolution_problem(self, r: Resolution) -> str | None:
        problem = self.book.authority_problem(r.by)
        if problem:
            return problem
        if self.resolution is not None and self.resolution_outcome is None:
            return "a resolution is already being verified"
        return None

    async def _try_resolve(self, r: Resolution) -> bool:
        self._set_phase(Phase.RESOLVING)
        self._log(r.by, "Resolve requested", r.summary, kind=TimelineKind.EVENT)
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
        self._log(CODEBLUE, "Health verification " + ("passed" if verified else "failed"), "; ".join(problems) or "pods ready, health endpoint OK",
                  kind=TimelineKind.VERIFICATION)
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
        await self.steps.resolve_pages(self.severity.value, self.commander)
        self._set_phase(Phase.RESOLVED)
        self._log(r.by, "Incident resolved" if verified else "Incident closed unverified (forced)", r.summary,
                  kind=TimelineKind.RESOLVED)
        wid = await start_own_post_incident(self._report(), self.commander)  # one post-mortem per run
        if wid:
            self.postmortem_id = wid
            self._log(CODEBLUE, "Post-incident started", f"{wid}: verification, closing comms, post-mortem within 24 h", kind=TimelineKind.POST_INCIDENT)
        else:
            self._log(CODEBLUE, "Post-incident could not start",
                      f"start it by hand: codeblue postmortem start {self.inp.incident_id}", kind=TimelineKind.POST_INCIDENT)
        self.resolution_outcome = ResolutionResult(
            resolved=True, verified=verified, message=self.final_status
        )
        return True

