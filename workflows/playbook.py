"""What every runbook playbook workflow starts with: config, timeline, the IC's gate, steps."""

from __future__ import annotations

from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.approvals import ApprovalBook, ApprovalHandlers
from workflows.steps import Steps
from workflows.timeline import CODEBLUE, Timeline

with workflow.unsafe.imports_passed_through():
    from activities import authority
    from domain import catalog
    from domain.config import CodeBlueConfig
    from domain.identity import UNVERIFIED, person
    from domain.incident import IncidentRef, IncidentReport, Phase, TimelineKind


class Playbook(ApprovalHandlers):
    """Base of the playbooks started for an incident (by the CLI or as the P0's children).
    Their input names the incident, who asked and who decides (the requester when no IC).
    A playbook names its report's subject (`_subject`) and, if not its facts, its assessment."""

    # without an incident to take the IC from, the starter is the IC (a restore waits for one)
    requester_is_ic = True

    def _begin(self, inp: Any) -> None:
        self.inp = inp
        self.cfg = CodeBlueConfig()  # the worker's, once run() has read it
        self.started = workflow.info().start_time
        self.tl = Timeline(self.started)
        self.book = ApprovalBook(self.tl, lambda: self.cfg.mitigation.approvers, lambda: self.cfg.mitigation.two_person)
        self.book.commander = inp.commander or inp.requested_by
        self.steps = Steps(self.tl, inp.incident_id, lambda: self.cfg.contacts)
        self.phase = Phase.OPEN
        self.status_text = "open"
        self.verified: bool | None = None
        self.summary: str | None = None
        self.facts: dict[str, Any] = {}

    async def _configure(self) -> None:
        """A playbook's first steps: the worker's config (kept in history), then the IC's
        authority, which needs it."""
        self.cfg = await self.steps.worker_config(self.inp)
        await self._authorize()

    async def _authorize(self) -> None:
        """A playbook acts for its incident: it takes that incident's IC (read from the
        incident's own workflow, never from the starter), and only that IC, a configured
        approver or an admin may start it. A child of the incident got the IC from its parent.
        Call after the worker's config is read; a refusal is recorded and fails the run."""
        inp = self.inp
        if inp.start_refused:
            self._refuse(UNVERIFIED, f"unauthenticated: {inp.start_refused}")
        auth = await self.steps.read(authority.incident_authority, IncidentRef(incident_id=inp.incident_id), "read the incident's IC")
        if auth is not None and auth.exists and auth.service:
            await self._act_for(auth.service)
        for what, given, allowed in self._pinned():
            if given is not None and given != allowed:
                self._refuse(inp.requested_by, f"{what} {given!r} is not the worker's ({allowed!r}): "
                             "the worker's config decides where CodeBlue acts")
        if workflow.info().parent is not None:
            return
        starter, roles = person(inp.requested_by), set(inp.requested_roles)
        admin = "admin" in roles
        if auth is None:
            self._refuse(inp.requested_by, f"cannot read incident {inp.incident_id}'s commander")
        if auth.exists:
            self.book.commander = auth.commander
            if starter == person(auth.commander) or starter in self.cfg.mitigation.approvers or admin:
                self.tl.log(CODEBLUE, "Authority", f"IC {auth.commander or 'unassigned'} (incident {inp.incident_id}); "
                            f"started by {inp.requested_by}", kind=TimelineKind.COMMANDER)
                return
            self._refuse(inp.requested_by, f"{starter} is not the IC ({auth.commander or 'unassigned'}) of "
                         f"{inp.incident_id}, a configured approver or an admin")
        # no CodeBlue incident of that ID: only an admin runs one (anyone else would make
        # themselves the IC of an incident nobody opened)
        if admin:
            self.book.commander = getattr(inp, "commander", None) or (starter if self.requester_is_ic else None)
            return
        self._refuse(inp.requested_by, f"no incident {inp.incident_id} exists and {starter} is not an admin")

    async def _act_for(self, service: str) -> None:
        """The playbook acts on its incident's service (read from the incident, never from the
        input): with a service catalog, that service's targets; a service the catalog does not
        know refuses the run. A one-service config's flat sections are that service."""
        if not self.cfg.services:
            return
        if service not in catalog.catalog(self.cfg):
            self._refuse(CODEBLUE, f"incident {self.inp.incident_id} is about {service}, which the service catalog "
                         f"does not know: name its catalog service first (codeblue incident service)")
        self.cfg = await self.steps.service_config(service)
        self.steps.service = service
        self.tl.log(CODEBLUE, f"Acting for {service}", f"incident {self.inp.incident_id}'s service: namespace "
                    f"{self.cfg.kubernetes.namespace}, deployment {self.cfg.kubernetes.gateway_deployment or '-'}, "
                    f"release {self.cfg.helm.release or '-'}", kind=TimelineKind.STEP)

    def _pinned(self) -> list[tuple[str, Any, Any]]:
        """(what, the input's value, the worker's config): an input may name a target only to
        repeat the worker's own choice."""
        return []

    def _refuse(self, actor: str, why: str) -> NoReturn:
        """Recorded, then the run fails (non-retryable): its ID is free again for the IC
        (starters use ALLOW_DUPLICATE_FAILED_ONLY), and the UI shows it as failed."""
        self.tl.log(actor, "Start refused", why, kind=TimelineKind.IGNORED)
        self.book.closed_reason = f"this run was refused: {why}"
        self.status_text = "refused"
        self.summary = f"refused: {why}"
        raise ApplicationError(f"start refused: {why}", type="StartRefused", non_retryable=True)

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
            unverified_commands=self.tl.unverified,
        )

    def _subject(self) -> tuple[str, str]:
        """The report's title and service."""
        raise NotImplementedError

    def _assessment(self) -> dict[str, Any]:
        return dict(self.facts)
