"""Post-incident deadlines: the IC's reminders and the engineering manager's page while the
post-mortem is not held, and a reminder to each overdue action item's owner.

Every deadline counts from the resolution time or from the item's last reminder (both in the
state continue-as-new carries), so a new run finds the same ones. The pages and messages,
in their order, are the ones `PostIncidentWorkflow` sent when this code lived there, so its
histories replay unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta

from temporalio import workflow

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifierActivities
    from domain.config import CodeBlueConfig
    from domain.incident import IncidentReport, TimelineKind
    from domain.notify import Audience, MessageRequest
    from domain.post_incident import ActionItem, ItemState, PostIncidentInput, PostIncidentState
    from workflows.steps import Steps
    from workflows.timeline import CODEBLUE, Timeline

# what a deadline sends when it passes
Fire = Callable[[], Awaitable[None]]


def parse_utc(iso: str) -> datetime:
    """A time as the state stores it (ISO 8601); naive means UTC."""
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def overdue_at(due: date) -> datetime:
    """An item due on a day is overdue once that day has ended (UTC)."""
    return datetime.combine(due + timedelta(days=1), time(0, 0), tzinfo=UTC)


def due_by(resolved: datetime, hours: int) -> str:
    """`hours` after the resolution, as the reminders and the draft show it."""
    return f"{resolved + timedelta(hours=hours):%Y-%m-%d %H:%M} UTC"


class Deadlines:
    """The deadlines of one run's tracking loop; built once the run has read its config and
    report, which do not change after."""

    def __init__(self, steps: Steps, tl: Timeline, st: PostIncidentState, cfg: CodeBlueConfig,
                 inp: PostIncidentInput, report: IncidentReport, commander: str | None, resolved: datetime) -> None:
        self.steps = steps
        self.tl = tl
        self.st = st
        self.cfg = cfg
        self.inp = inp
        self.report = report
        self.commander = commander
        self.resolved = resolved

    def pending(self) -> list[tuple[datetime, Fire]]:
        """Each deadline not yet met, past or future, with what to send at it."""
        out: list[tuple[datetime, Fire]] = []
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
                at = parse_utc(item.last_reminded_at) + every if item.last_reminded_at else overdue_at(item.due)
                out.append((at, self._overdue(item)))
        return out

    def _reminder(self, key: str, hours: int) -> Fire:
        async def fire() -> None:
            self.st.milestones_sent.append(key)
            due = due_by(self.resolved, self.cfg.postincident.postmortem_within_hours)
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

    def _overdue(self, item: ActionItem) -> Fire:
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
