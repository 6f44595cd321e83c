"""What every runbook playbook workflow starts with: config, timeline, the IC's gate, steps."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows.approvals import ApprovalBook, ApprovalHandlers
from workflows.steps import Steps
from workflows.timeline import Timeline

with workflow.unsafe.imports_passed_through():
    from domain.config import CodeBlueConfig
    from domain.incident import IncidentReport, Phase


class Playbook(ApprovalHandlers):
    """Base of the playbooks started for an incident (by the CLI or as the P0's children).
    Their input names the incident, who asked and who decides (the requester when no IC).
    A playbook names its report's subject (`_subject`) and, if not its facts, its assessment."""

    def _begin(self, inp: Any) -> None:
        self.inp = inp
        self.cfg = inp.config or CodeBlueConfig()
        self.started = workflow.info().start_time
        self.tl = Timeline(self.started)
        self.book = ApprovalBook(self.tl, lambda: self.cfg.mitigation.approvers)
        self.book.commander = inp.commander or inp.requested_by
        self.steps = Steps(self.tl, inp.incident_id, lambda: self.cfg.contacts)
        self.phase = Phase.OPEN
        self.status_text = "open"
        self.verified: bool | None = None
        self.summary: str | None = None
        self.facts: dict[str, Any] = {}

    def _report(self) -> IncidentReport:
        """The run's result and the `status` query's answer: reads state, issues no command."""
        title, service = self._subject()
        return IncidentReport(
            incident_id=self.inp.incident_id,
            title=title,
            severity=self.inp.severity,
            service=service,
            status=self.status_text,
            phase=self.phase,
            commander=self.book.commander,
            started_at=self.started.isoformat(),
            actions=list(self.book.actions.values()),
            timeline=list(self.tl.entries),
            summary=self.summary,
            verified=self.verified,
            assessment=self._assessment(),
        )

    def _subject(self) -> tuple[str, str]:
        """The report's title and service."""
        raise NotImplementedError

    def _assessment(self) -> dict[str, Any]:
        return dict(self.facts)
