"""Post-incident: resolution verification, closing communications, post-mortem and action items.

Models only; the workflow is workflows/post_incident.py, the draft domain/postmortem.py.
"""

from __future__ import annotations

from datetime import date
from enum import Enum

from pydantic import BaseModel, Field, field_validator

from domain.bounds import Name, Text
from domain.identity import StartedBy
from domain.incident import IncidentRef, IncidentReport, TimelineEntry


def postmortem_workflow_id(incident_id: str, ordinal: int = 1) -> str:
    """One post-incident workflow per incident run: `<ID>-postmortem`, and for later runs of
    the same ID (a recurring alert key) `<ID>-postmortem-2`, `-3`, ... The incident's report
    names its own (`postmortem_workflow_id`)."""
    return f"{incident_id}-postmortem" if ordinal <= 1 else f"{incident_id}-postmortem-{ordinal}"


class ItemState(str, Enum):
    OPEN = "open"
    DONE = "done"
    DEFERRED = "deferred"


class ActionItem(BaseModel):
    id: str  # AI-1, AI-2, ...
    text: str
    owner: str
    due: date
    state: ItemState = ItemState.OPEN
    added_by: str
    added_at: str  # ISO 8601 UTC
    closed_by: str | None = None
    closed_at: str | None = None
    deferral_reason: str | None = None
    reminders: int = 0
    last_reminded_at: str | None = None


class NewActionItem(BaseModel):
    """Update `add_action_item`."""

    text: str = Field(min_length=1, max_length=500)
    owner: str = Field(min_length=1, max_length=100)
    due: date
    by: Name = Field(min_length=1)

    @field_validator("text", "owner")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class CloseActionItem(BaseModel):
    """Update `complete_action_item`: done, or (IC only, with a reason) deferred."""

    item_id: Name
    by: Name
    defer: bool = False
    reason: str | None = Field(default=None, max_length=4000)


class PostmortemHeld(BaseModel):
    """Signal or update `postmortem_held`."""

    by: Name = Field(min_length=1)
    notes: Text = ""


class SmokeCheckRequest(BaseModel):
    name: str
    method: str = "GET"
    url: str
    expected_status: int = 200
    timeout_seconds: float = 5.0


class SmokeCheckResult(BaseModel):
    name: str
    ok: bool
    status: int | None = None
    detail: str = ""


class CalendarInvite(BaseModel):
    """The calendar-style payload posted to `postincident.calendar_webhook_url`."""

    incident_id: str
    summary: str
    description: str
    start: str  # ISO 8601 UTC
    end: str
    attendees: list[dict[str, str]] = []
    idempotency_key: str


class Verification(BaseModel):
    ok: bool
    problems: list[str] = []
    checks: list[str] = []  # what passed, one line each


class PostIncidentState(BaseModel):
    """Everything the workflow carries across continue-as-new."""

    resolved_at: str  # ISO 8601 UTC; every post-incident deadline counts from here
    verification: Verification | None = None
    reopened: str | None = None  # how the incident was reopened, if it was
    comms_done: bool = False
    scheduled_slot: str | None = None  # "start/end" ISO
    milestones_sent: list[str] = []
    held_by: str | None = None
    held_at: str | None = None
    held_notes: str = ""
    items: list[ActionItem] = []
    next_item: int = 1
    timeline: list[TimelineEntry] = []
    runs: int = 1
    unverified: int = 0  # commands refused for want of a proof so far
    slis_before: dict[str, float | None] = {}  # SLI values before the onset, for the draft
    slis_after: dict[str, float | None] = {}  # ... and at verification


class PostIncidentInput(StartedBy):
    incident_id: str
    # the resolved incident's report (the P0 workflow's `status`), or None with `report_ref`:
    # the workflow then reads it (activity incident_report), so no start input carries it
    report: IncidentReport | None = None
    report_ref: IncidentRef | None = None
    commander: str | None = None  # default: the report's commander
    resolved_at: str | None = None  # ISO 8601 UTC; default: when this workflow starts
    incident_run_id: str | None = None  # the incident run it follows: `reopen` goes there only
    state: PostIncidentState | None = None  # set only by continue-as-new


class PostIncidentStatus(BaseModel):
    """Query `progress`: what the CLI shows besides the draft."""

    incident_id: str
    verification: Verification | None
    reopened: str | None
    scheduled_slot: str | None
    held_by: str | None
    items: list[ActionItem]
    done: bool


class Reopen(BaseModel):
    """Signal `reopen` to a still-open incident whose resolution failed verification."""

    by: Name = "codeblue"
    reason: str = Field(max_length=2000)


class ReopenRequest(BaseModel):
    """What the post-incident workflow asks its `reopen_incident` activity to send."""

    incident_id: str
    run_id: str | None = None
    reason: str = Field(max_length=2000)
