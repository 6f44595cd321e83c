"""Post-incident: verify the resolution, close communications, hold the post-mortem within 24 h.

One workflow per incident (ID `<incident ID>-postmortem`), started by the incident response
when the IC resolves (a child that outlives it) or from the CLI. Every deadline counts from
the resolution time, so reminders survive continue-as-new unchanged. It ends when the
post-mortem is marked held and every action item is done or deferred by the IC.

This module holds the run, its handlers and the post-mortem's slot; the verification and what
follows it are in `workflows.post_incident_resolution`, the deadlines in
`workflows.post_incident_deadlines`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities import authority
    from activities.post_incident import PostIncidentActivities
    from domain import catalog
    from domain.config import CodeBlueConfig
    from domain.identity import UNVERIFIED, person
    from domain.incident import IncidentReport, Phase, TimelineKind
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
    )
    from domain.postmortem import PostmortemExtras, render_postmortem
    from domain.severity import Severity
    from workflows.post_incident_deadlines import Deadlines, due_by, parse_utc
    from workflows.post_incident_resolution import close_communications, reopen, verify_resolution
    from workflows.steps import READ_RETRY, Steps
    from workflows.timeline import CODEBLUE, Timeline


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
        self.resolved = parse_utc(self.st.resolved_at)
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
        service = self.report.service
        if self.cfg.services and service in catalog.catalog(self.cfg):  # verify the incident's own service
            self.cfg = await self.steps.service_config(service)
            self.steps.service = service
        pi = self.cfg.postincident
        if inp.state is None:
            self.tl.log(
                CODEBLUE,
                "Post-incident started",
                f"IC {self.commander or 'unassigned'}; post-mortem due by {due_by(self.resolved, pi.postmortem_within_hours)}", kind=TimelineKind.POST_INCIDENT,
            )
        self._details()
        if self.st.verification is None:
            self.st.verification = await verify_resolution(self.steps, self.tl, self.cfg, self.st, self.inp, self.report)
            if not self.st.verification.ok:
                await reopen(self.steps, self.tl, self.st, self.inp, self.report, self.commander, self.st.verification)
        if not self.st.comms_done:
            if self.st.verification.ok:
                await close_communications(self.steps, self.cfg, self.st, self.inp, self.report)
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

    # ------------------------------------------------------- post-mortem
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
        deadlines = Deadlines(self.steps, self.tl, self.st, self.cfg, self.inp, self.report, self.commander, self.resolved)
        while not self._done():
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > self.cfg.postincident.max_history_events:
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._continue_as_new()
            now = workflow.now()
            pending = deadlines.pending()
            for at, fire in pending:
                if at <= now:
                    await fire()
            upcoming = [at for at, _ in deadlines.pending() if at > workflow.now()]
            seen = self.rev
            timeout = (min(upcoming) - workflow.now()) if upcoming else None

            def moved(seen: int = seen) -> bool:
                return self.rev != seen

            try:
                await workflow.wait_condition(moved, timeout=timeout, timeout_summary="next post-incident deadline")
            except TimeoutError:
                pass

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
            f"- post-mortem: {'held by ' + self.st.held_by if self.st.held_by else 'not held; due by ' + due_by(self.resolved, self.cfg.postincident.postmortem_within_hours)}",
            f"- action items: {len(self.st.items)} ({len(open_items)} open)",
        ]
        workflow.set_current_details("\n".join(lines))

    def _report(self) -> IncidentReport:
        """The incident's report, with the post-incident timeline appended (seconds since start)."""
        r = self.report
        offset = (self.resolved - parse_utc(r.started_at)).total_seconds()
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
