"""Post-incident: verify the resolution, close communications, hold the post-mortem within 24 h.

One workflow per incident (ID `<incident ID>-postmortem`), started by the incident response
when the IC resolves (a child that outlives it) or from the CLI. Every deadline counts from
the resolution time, so reminders survive continue-as-new unchanged. It ends when the
post-mortem is marked held and every action item is done or deferred by the IC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from temporalio import workflow
from temporalio.common import RawValue, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, FailureError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities import authority
    from activities.kubernetes import KubernetesActivities
    from activities.notify import NotifierActivities
    from activities.post_incident import PostIncidentActivities
    from domain.cluster import (
        NamespaceQuery,
    )
    from domain.config import CodeBlueConfig
    from domain.identity import UNVERIFIED, person
    from domain.incident import IncidentInput, IncidentReport, Phase, TimelineKind
    from domain.notify import Audience, MessageRequest, StatusPageRequest, public_text, public_title
    from domain.post_incident import (
        ActionItem,
        CalendarInvite,
        CloseActionItem,
        ItemState,
        NewActionItem,
        PostIncidentInput,
        PostIncidentState,
        PostIncidentStatus,
        PostmortemHeld,
        ReopenRequest,
        SmokeCheckRequest,
        Verification,
    )
    from domain.postmortem import PostmortemExtras, render_postmortem
    from domain.severity import Severity
    from workflows.analysis import analyse, read_slis
    from workflows.runbook_steps import gateway_logs, verify_health
    from workflows.steps import READ_RETRY, Steps
    from workflows.timeline import CODEBLUE, Timeline


def _parse(iso: str) -> datetime:
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _overdue_at(due: date) -> datetime:
    """An item due on a day is overdue once that day has ended (UTC)."""
    return datetime.combine(due + timedelta(days=1), time(0, 0), tzinfo=UTC)


# the title a post-mortem shows until it has read its incident's report (by reference)
READING_REPORT = "(reading the incident's report)"


@workflow.defn
class PostIncidentWorkflow:
    @workflow.init
    def __init__(self, inp: PostIncidentInput) -> None:
        self.inp = inp
        # by reference: a stand-in until run() has read the incident's report
        self.report = inp.report or IncidentReport(
            incident_id=inp.incident_id, title=READING_REPORT, severity=Severity.P1, service="",
            status="resolved", phase=Phase.RESOLVED, started_at=inp.resolved_at or "", commander=inp.commander,
        )
        self.cfg = CodeBlueConfig()  # the worker's, once run() has read it
        self.commander = inp.commander or self.report.commander
        resolved_at = inp.resolved_at or workflow.info().start_time.isoformat()
        self.st = inp.state or PostIncidentState(resolved_at=resolved_at)
        self.resolved = _parse(self.st.resolved_at)
        self.tl = Timeline(self.resolved)
        self.tl.entries = list(self.st.timeline)
        self.tl.unverified = self.st.unverified
        self.steps = Steps(self.tl, inp.incident_id, lambda: self.cfg.contacts)
        self.rev = 0  # bumped by every handler that may change what the loop waits for
        self.finished = False

    # ---------------------------------------------------------------- run
    @workflow.run
    async def run(self, inp: PostIncidentInput) -> IncidentReport:
        self.cfg = await self.steps.worker_config(inp)
        if inp.start_refused:  # worker.identity found no valid proof: notify nobody
            self.tl.log(UNVERIFIED, "Post-incident start refused: unauthenticated", inp.start_refused, kind=TimelineKind.IGNORED)
            self.finished = True
            raise ApplicationError(f"start refused: {inp.start_refused}", type="StartRefused", non_retryable=True)
        if inp.report is None and inp.report_ref is not None:
            self.report = await workflow.execute_activity(
                authority.incident_report, inp.report_ref,
                start_to_close_timeout=timedelta(seconds=60), retry_policy=READ_RETRY,
                summary="read the incident's report",
            )
            self.commander = inp.commander or self.report.commander
        pi = self.cfg.postincident
        if inp.state is None:
            self.tl.log(
                CODEBLUE,
                "Post-incident started",
                f"IC {self.commander or 'unassigned'}; post-mortem due by {self._at_hours(pi.postmortem_within_hours)}", kind=TimelineKind.POST_INCIDENT,
            )
        self._details()
        if self.st.verification is None:
            self.st.verification = await self._verify()
            if not self.st.verification.ok:
                await self._reopen(self.st.verification)
        if not self.st.comms_done:
            if self.st.verification.ok:
                await self._communicate()
            else:
                self.tl.log(CODEBLUE, "Closing communications held back", "resolution failed verification", kind=TimelineKind.NOTIFICATION)
            self.st.comms_done = True
        if self.st.scheduled_slot is None:
            await self._schedule()
        await self._track()
        self.finished = True
        self.tl.log(CODEBLUE, "Post-incident complete", f"post-mortem held by {self.st.held_by}; action items closed", kind=TimelineKind.POST_INCIDENT)
        self._details()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._report()

    # ------------------------------------------------------- queries
    @workflow.query
    def status(self) -> IncidentReport:
        return self._report()

    @workflow.query
    def postmortem(self) -> str:
        """The post-mortem draft in Markdown."""
        return render_postmortem(self.report, self._extras())

    @workflow.query
    def progress(self) -> PostIncidentStatus:
        return PostIncidentStatus(
            incident_id=self.inp.incident_id,
            verification=self.st.verification,
            reopened=self.st.reopened,
            scheduled_slot=self.st.scheduled_slot,
            held_by=self.st.held_by,
            items=self.st.items,
            done=self.finished,
        )

    def refused_command(self, handler: str, typed_by: str | None, problem: str) -> None:
        """A signal without a valid proof of identity (worker.identity): recorded, nothing changes."""
        self.tl.refused(handler, typed_by, problem)

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Any other signal name: worker.identity refuses it before this runs."""

    # ------------------------------------------------------- post-mortem held
    @workflow.signal(name="postmortem_held")
    def postmortem_held_signal(self, h: PostmortemHeld) -> None:
        problem = self._held_problem(h)
        if problem:
            self.tl.log(h.by, "Post-mortem held ignored", problem, kind=TimelineKind.IGNORED)
            return
        self._mark_held(h)

    @workflow.update(name="postmortem_held")
    def postmortem_held(self, h: PostmortemHeld) -> str:
        self._mark_held(h)
        return f"post-mortem marked held by {h.by}"

    @postmortem_held.validator
    def _validate_held(self, h: PostmortemHeld) -> None:
        problem = self._held_problem(h)
        if problem:
            raise ApplicationError(problem, type="PostmortemRejected")

    def _held_problem(self, h: PostmortemHeld) -> str | None:
        if self.finished:
            return "post-incident work is complete"
        if self.st.held_by:
            return f"the post-mortem was already marked held by {self.st.held_by}"
        return None

    def _mark_held(self, h: PostmortemHeld) -> None:
        self.st.held_by = h.by
        self.st.held_at = workflow.now().isoformat()
        self.st.held_notes = h.notes
        self.tl.log(h.by, "Post-mortem held", h.notes or None, kind=TimelineKind.POST_INCIDENT)
        self._changed()

    # ------------------------------------------------------- action items
    @workflow.update
    def add_action_item(self, n: NewActionItem) -> ActionItem:
        item = ActionItem(
            id=f"AI-{self.st.next_item}",
            text=n.text,
            owner=n.owner,
            due=n.due,
            added_by=n.by,
            added_at=workflow.now().isoformat(),
        )
        self.st.next_item += 1
        self.st.items.append(item)
        self.tl.log(n.by, f"Action item {item.id} added", f"{n.owner}, due {n.due.isoformat()}: {n.text}", kind=TimelineKind.POST_INCIDENT)
        self._changed()
        return item

    @add_action_item.validator
    def _validate_add(self, n: NewActionItem) -> None:
        if self.finished:
            raise ApplicationError("post-incident work is complete", type="ActionItemRejected")

    @workflow.update
    def complete_action_item(self, c: CloseActionItem) -> ActionItem:
        item = self._item(c.item_id)
        assert item is not None
        item.state = ItemState.DEFERRED if c.defer else ItemState.DONE
        item.closed_by = c.by
        item.closed_at = workflow.now().isoformat()
        if c.defer:
            item.deferral_reason = c.reason
            self.tl.log(c.by, f"Action item {item.id} deferred", c.reason, kind=TimelineKind.POST_INCIDENT)
        else:
            self.tl.log(c.by, f"Action item {item.id} done", item.text, kind=TimelineKind.POST_INCIDENT)
        self._changed()
        return item

    @complete_action_item.validator
    def _validate_complete(self, c: CloseActionItem) -> None:
        problem = self._close_problem(c)
        if problem:
            raise ApplicationError(problem, type="ActionItemRejected")

    def _close_problem(self, c: CloseActionItem) -> str | None:
        if self.finished:
            return "post-incident work is complete"
        item = self._item(c.item_id)
        if item is None:
            known = ", ".join(i.id for i in self.st.items) or "none yet"
            return f"unknown action item {c.item_id!r} (known: {known})"
        if item.state != ItemState.OPEN:
            return f"action item {item.id} is already {item.state.value}"
        if c.defer:
            if person(c.by) != person(self.commander):
                return f"only the incident commander ({self.commander or 'unassigned'}) may defer an action item"
            if not (c.reason or "").strip():
                return "deferring an action item needs a reason"
        return None

    def _item(self, item_id: str) -> ActionItem | None:
        return next((i for i in self.st.items if i.id.lower() == item_id.strip().lower()), None)

    # ------------------------------------------------------- 1. verification
    async def _verify(self) -> Verification:
        k = self.cfg.kubernetes
        pi = self.cfg.postincident
        ns = NamespaceQuery(namespace=k.namespace)
        problems: list[str] = []
        checks: list[str] = []
        pods, deps, logs = await asyncio.gather(
            self.steps.read(KubernetesActivities.pod_status, ns, "verify pods ready"),
            self.steps.read(KubernetesActivities.deployment_status, ns, "verify deployments available"),
            gateway_logs(self.steps, k, "verify log error rate"),
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

        h = self.cfg.health
        slow_or_failed: list[str] = []
        latencies: list[float] = []
        for i in range(pi.health_probes):
            if i:
                await workflow.sleep(timedelta(seconds=pi.probe_interval_seconds), summary=f"health probe {i + 1}/{pi.health_probes}")
            r = await verify_health(self.steps, h, f"verify health {i + 1}/{pi.health_probes}")
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
            res = await self.steps.read(
                PostIncidentActivities.smoke_check,
                SmokeCheckRequest(name=sc.name, method=sc.method, url=sc.url, expected_status=sc.expected_status),
                f"smoke check {sc.name}",
            )
            if res is None or not res.ok:
                problems.append(f"smoke check {sc.name} failed" + (f": {res.detail}" if res else ""))
            else:
                checks.append(f"smoke check {sc.name}: {res.detail}")

        # the SLIs decide too, and the draft gets before/after
        an = await analyse(self.steps, self.tl, self.inp.incident_id, self.cfg.prometheus, "Metric analysis")
        if an.ok is False:
            problems.append(f"SLI analysis failed: {an.detail}")
        elif an.ok:
            checks.append(f"SLI analysis passed: {an.detail}")
        if an.readings:
            self.st.slis_after = {v.name: v.value for v in an.readings[-1].values}
        if self.cfg.prometheus.url and self.report.started_at:
            onset = datetime.fromisoformat(self.report.started_at.replace("Z", "+00:00"))
            before = await read_slis(self.steps, self.inp.incident_id, "SLIs before the onset",
                                     at=(onset - timedelta(minutes=10)).isoformat())
            if before is not None and not before.skipped:
                self.st.slis_before = {v.name: v.value for v in before.values}
        v = Verification(ok=not problems, problems=problems, checks=checks)
        self.tl.log(
            CODEBLUE,
            "Resolution verified" if v.ok else "Resolution verification failed",
            "; ".join(checks) if v.ok else "; ".join(problems),
            kind=TimelineKind.VERIFICATION,
        )
        return v

    async def _reopen(self, v: Verification) -> None:
        """Tell the IC; reopen the incident if it is still open, else open a linked one."""
        iid = self.inp.incident_id
        why = "; ".join(v.problems)
        await self.steps.page(
            Audience.COMMANDER, "verification-failed", f"{iid} failed post-resolution verification: {why}",
            self.report.severity.value, self.commander,
        )
        try:
            # the run this post-mortem belongs to, never a later run of a recurring alert key
            await workflow.execute_activity(
                authority.reopen_incident, ReopenRequest(incident_id=iid, run_id=self.inp.incident_run_id, reason=why[:2000]),
                start_to_close_timeout=timedelta(seconds=30), retry_policy=READ_RETRY, summary=f"reopen {iid}")
            self.st.reopened = f"signalled incident {iid} to reopen"
        except FailureError:
            new_id = f"{iid[:55]}-reopened"
            try:
                await workflow.start_child_workflow(
                    "IncidentResponseWorkflow",
                    IncidentInput(
                        incident_id=new_id,
                        title=f"Reopened {iid}: {self.report.title}"[:200],
                        severity=self.report.severity,
                        service=self.report.service,
                        commander=self.commander,
                        requested_by=CODEBLUE,
                        severity_reasons=[f"{iid} failed verification after resolution: {why}"[:300]],
                    ),
                    id=new_id,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"{self.report.severity.value}: reopened {iid}",
                )
                self.st.reopened = f"{iid} had closed; opened linked incident {new_id}"
            except FailureError as e:
                self.st.reopened = f"{iid} had closed; a new linked incident is needed ({new_id} could not start: {e})"
        self.tl.log(CODEBLUE, "Incident reopened", self.st.reopened, kind=TimelineKind.OPENED)

    # ------------------------------------------------------- 2. communication
    async def _communicate(self) -> None:
        r = self.report
        iid = self.inp.incident_id
        major = r.severity.is_major
        if major:
            await self.steps.notify(
                NotifierActivities.status_page,
                StatusPageRequest(  # public text only: the title and summary stay internal
                    incident_id=iid, title=public_title(r.service), status="resolved",
                    message=public_text("verified", r.service, r.public_summary),
                    impact="critical" if r.severity.value == "P0" else "major",
                ),
                "Status page resolved",
            )
        await self.steps.notify(
            NotifierActivities.post_message,
            MessageRequest(
                incident_id=iid,
                kind="stakeholders",
                text=(
                    f"[{r.severity.value}] {public_title(r.service)}: resolution verified "
                    f"({'; '.join(self.st.verification.checks if self.st.verification else [])}). "
                    f"Post-mortem within {self.cfg.postincident.postmortem_within_hours} h."
                ),
                idempotency_key=f"{iid}:stakeholders:postincident",
            ),
            "Stakeholders notified",
        )
        if major:
            await self.steps.notify(
                NotifierActivities.post_message,
                MessageRequest(
                    incident_id=iid, kind="channel_close", text=f"incident-{iid.lower()}",
                    idempotency_key=f"{iid}:channel_close",
                ),
                "Incident channel closed",
            )

    # ------------------------------------------------------- 3. post-mortem
    async def _schedule(self) -> None:
        pi = self.cfg.postincident
        latest_end = self.resolved + timedelta(hours=pi.postmortem_within_hours)
        length = timedelta(minutes=pi.postmortem_duration_minutes)
        start = max(self.resolved + timedelta(hours=pi.postmortem_slot_after_hours), workflow.now())
        start = min(start, latest_end - length)
        end = start + length
        c = self.cfg.contacts
        attendees = [
            {"role": "incident_commander", "name": self.commander or "unassigned"},
            {"role": "on_call", "contact": c.on_call},
            {"role": "engineering_manager", "contact": c.engineering_manager},
            {"role": "devops_lead", "contact": c.devops_lead},
        ]
        r = self.report
        invite = CalendarInvite(
            incident_id=self.inp.incident_id,
            # public text only: the title is internal and may name a patient
            summary=f"Post-mortem: {self.inp.incident_id} ({r.service})"[:200],
            description=f"{r.severity.value} incident on {r.service}. Draft: codeblue postmortem {self.inp.incident_id}",
            start=start.isoformat(),
            end=end.isoformat(),
            attendees=attendees,
            idempotency_key=f"{self.inp.incident_id}:postmortem-invite",
        )
        self.st.scheduled_slot = f"{start:%Y-%m-%d %H:%M} - {end:%H:%M} UTC"
        await self.steps.notify(PostIncidentActivities.schedule_postmortem, invite, "Schedule post-mortem")

    def _done(self) -> bool:
        return bool(self.st.held_by) and all(i.state != ItemState.OPEN for i in self.st.items)

    async def _track(self) -> None:
        """One loop over every deadline: IC reminders, the manager's page, overdue items."""
        while not self._done():
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > self.cfg.postincident.max_history_events:
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._continue_as_new()
            now = workflow.now()
            pending = self._deadlines()
            for at, fire in pending:
                if at <= now:
                    await fire()
            pending = [at for at, _ in self._deadlines() if at > workflow.now()]
            seen = self.rev
            timeout = (min(pending) - workflow.now()) if pending else None

            def moved(seen: int = seen) -> bool:
                return self.rev != seen

            try:
                await workflow.wait_condition(moved, timeout=timeout, timeout_summary="next post-incident deadline")
            except TimeoutError:
                pass

    def _deadlines(self) -> list:
        out = []
        pi = self.cfg.postincident
        if not self.st.held_by:
            for h in sorted(pi.remind_commander_at_hours):
                key = f"remind-{h}h"
                if h < pi.postmortem_within_hours and key not in self.st.milestones_sent:
                    out.append((self.resolved + timedelta(hours=h), self._reminder(key, h)))
            if "page-em" not in self.st.milestones_sent:
                out.append((self.resolved + timedelta(hours=pi.postmortem_within_hours), self._page_em))
        every = timedelta(hours=pi.overdue_reminder_every_hours)
        for item in self.st.items:
            if item.state == ItemState.OPEN:
                at = _parse(item.last_reminded_at) + every if item.last_reminded_at else _overdue_at(item.due)
                out.append((at, self._overdue(item)))
        return out

    def _reminder(self, key: str, hours: int):
        async def fire() -> None:
            self.st.milestones_sent.append(key)
            due = self._at_hours(self.cfg.postincident.postmortem_within_hours)
            await self.steps.page(
                Audience.COMMANDER, f"postmortem-{key}",
                f"{self.inp.incident_id}: post-mortem not held {hours} h after resolution; due by {due}",
                self.report.severity.value, self.commander,
            )
            self.tl.log(CODEBLUE, f"Reminded IC: post-mortem not held at {hours} h", self.commander, kind=TimelineKind.NOTIFICATION)

        return fire

    async def _page_em(self) -> None:
        self.st.milestones_sent.append("page-em")
        h = self.cfg.postincident.postmortem_within_hours
        await self.steps.page(
            Audience.ENGINEERING_MANAGER, "postmortem-overdue",
            f"{self.inp.incident_id}: post-mortem not held within {h} h of resolution (IC {self.commander})",
            self.report.severity.value, self.commander,
        )
        self.tl.log(CODEBLUE, f"Post-mortem not held within {h} h", "paged engineering manager", kind=TimelineKind.POST_INCIDENT)

    def _overdue(self, item: ActionItem):
        async def fire() -> None:
            item.reminders += 1
            item.last_reminded_at = workflow.now().isoformat()
            await self.steps.notify(
                NotifierActivities.post_message,
                MessageRequest(
                    incident_id=self.inp.incident_id,
                    kind="reminder",
                    text=f"@{item.owner}: action item {item.id} from {self.inp.incident_id} was due {item.due.isoformat()}: {item.text}",
                    idempotency_key=f"{self.inp.incident_id}:{item.id}:overdue:{item.reminders}",
                ),
                f"Reminded {item.owner}: {item.id} overdue",
            )

        return fire

    def _continue_as_new(self) -> None:
        self.st.runs += 1
        self.tl.log(CODEBLUE, "Continued as new", f"run {self.st.runs}; history had {workflow.info().get_current_history_length()} events", kind=TimelineKind.CONTINUED)
        self.st.timeline = list(self.tl.entries)
        self.st.unverified = self.tl.unverified
        workflow.continue_as_new(
            PostIncidentInput(
                incident_id=self.inp.incident_id,
                report=self.report,
                commander=self.commander,
                resolved_at=self.st.resolved_at,
                state=self.st,
                incident_run_id=self.inp.incident_run_id,
            )
        )

    # ------------------------------------------------------- helpers
    def _changed(self) -> None:
        self.rev += 1
        self._details()

    def _at_hours(self, hours: int) -> str:
        return f"{self.resolved + timedelta(hours=hours):%Y-%m-%d %H:%M} UTC"

    def _extras(self) -> PostmortemExtras:
        return PostmortemExtras(
            verification=self.st.verification,
            reopened=self.st.reopened,
            scheduled_slot=self.st.scheduled_slot,
            held_by=self.st.held_by,
            held_at=self.st.held_at,
            items=self.st.items,
            resolved_at=self.st.resolved_at,
            post_timeline=self.tl.entries,
            slis_before=self.st.slis_before,
            slis_after=self.st.slis_after,
        )

    def _details(self) -> None:
        v = self.st.verification
        open_items = [i for i in self.st.items if i.state == ItemState.OPEN]
        lines = [
            f"**Post-incident · {self.inp.incident_id}** — {self.report.title}",
            f"IC: {self.commander or '_unassigned_'}",
            "- verification: " + ("pending" if v is None else ("passed" if v.ok else "**failed**")),
            f"- post-mortem: {'held by ' + self.st.held_by if self.st.held_by else 'not held; due by ' + self._at_hours(self.cfg.postincident.postmortem_within_hours)}",
            f"- action items: {len(self.st.items)} ({len(open_items)} open)",
        ]
        workflow.set_current_details("\n".join(lines))

    def _report(self) -> IncidentReport:
        """The incident's report, with the post-incident timeline appended (seconds since start)."""
        r = self.report
        offset = (self.resolved - _parse(r.started_at)).total_seconds()
        post = [e.model_copy(update={"at_seconds": round(offset + e.at_seconds, 3)}) for e in self.tl.entries]
        v = self.st.verification
        return r.model_copy(
            update={
                "status": r.status if v is None or v.ok else "reopened",
                "phase": Phase.RESOLVED,
                "timeline": list(r.timeline) + post,
                "verified": r.verified if v is None else v.ok,
                "unverified_commands": r.unverified_commands + self.tl.unverified,
            }
        )
