"""The incident's state and the helpers every part of its workflow shares: what a run starts
from, what continue-as-new carries, the activity-call shorthands, the UI details and the report."""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from domain import search_attributes as sa
    from domain.alerts import AlertLedger
    from domain.assessment import Assessment, Diagnostics
    from domain.config import CodeBlueConfig
    from domain.incident import (
        Action,
        ActionState,
        Escalation,
        IncidentCarry,
        IncidentInput,
        IncidentReport,
        Phase,
        ProposalWatch,
        Resolution,
        ResolutionResult,
        SlaClock,
        TimelineKind,
        Undo,
    )
    from domain.notes import NoteLedger
    from domain.notify import Audience, Delivery
    from domain.severity import Severity
    from domain.slack import SlackChannelRef, SlackShown
    from workflows.approvals import ApprovalBook, ApprovalHandlers
    from workflows.saga import Saga
    from workflows.slack_sync import SlackSync
    from workflows.steps import A, Activity, R, Steps
    from workflows.timeline import Timeline
    from workflows.timeline import mmss as _mmss





class IncidentState(ApprovalHandlers):
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
        self.steps.service = inp.service
        self.sla: dict[str, SlaClock] = {}
        self.assessment: Assessment | None = None
        self.status_page_opened = False
        self.status_page_status = ""  # what the status page says now (investigating, identified, monitoring)
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
        self.naming_service = False  # the IC's name_service is being applied
        self.alerts = AlertLedger()
        self.saga = Saga(self.tl, self._run_undo)  # every executed mitigation, whatever its batch
        self.notes = NoteLedger()
        self.slack = SlackSync(inp.incident_id, self.book, lambda: self.tl, lambda: self.severity.value,
                               lambda: self.final_status != "open")
        self.watch: ProposalWatch | None = None  # the waiting proposals' reminder clock
        self.slack_channel: SlackChannelRef | None = None  # the incident's own channel (Web API)
        self.runs = 1

    def _restore(self, c: IncidentCarry) -> None:
        """Pick up where the previous run stopped: same clocks, timeline, proposals and saga."""
        self.runs = c.runs
        self.started = datetime.fromisoformat(c.started_at)
        self.tl = Timeline(self.started)
        self.tl.entries = list(c.timeline)
        self.tl.unverified = c.unverified
        self.steps.paged = dict(c.paged)
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
        self.status_page_status = c.status_page_status
        self.escalations = list(c.escalations)
        self.saga.steps = [(self.book.actions[u.action_id], u) for u in c.saga if u.action_id in self.book.actions]
        self.watch = c.watch
        self.slack.shown = {k: SlackShown.model_validate(v) for k, v in c.slack.items()}
        self.slack.off = c.slack_off
        self.alerts.restore(c.alerts)
        self.notes.restore(c.notes)
        self.slack_channel = c.slack_channel

    def _carry(self) -> IncidentCarry:
        """Everything the next run needs to pick up where this one stops."""
        return IncidentCarry(
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
            status_page_status=self.status_page_status,
            escalations=list(self.escalations),
            saga=self.saga.records(),
            watch=self.watch if self.book.pending() else None,
            slack={k: v.model_dump(mode="json") for k, v in self.slack.shown.items()},
            slack_off=self.slack.off,
            alerts=self.alerts.to_state(),
            notes=self.notes.to_state(),
            unverified=self.tl.unverified,
            paged=dict(self.steps.paged),
            slack_channel=self.slack_channel,
        )

    @property
    def commander(self) -> str | None:
        return self.book.commander

    @property
    def actions(self) -> dict[str, Action]:
        return self.book.actions

    # ------------------------------------------------------------ helpers
    async def _run_undo(self, u: Undo) -> None:
        await self.steps.undo(u)

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

    def _log(self, actor: str, event: str, result: str | None = None, at: float | None = None, *,
             kind: TimelineKind) -> None:
        self.tl.log(actor, event, result, at, kind=kind)

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
            slack_channel=self.slack_channel,
        )

