"""Messages to people: pages, status page, stakeholders, incident channel."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel


class Audience(str, Enum):
    ON_CALL = "on_call"
    ENGINEERING_MANAGER = "engineering_manager"
    DEVOPS_LEAD = "devops_lead"
    SECURITY = "security"
    COMMANDER = "commander"


def public_title(service: str) -> str:
    """What the status page calls an incident: never its internal title (it may name a patient)."""
    return f"{service}: service disruption"


def public_text(phase: str, service: str, public_summary: str | None = None) -> str:
    """The public wording per phase; the IC's `--public-summary` (written for the public)
    replaces the template. Internal titles and summaries never reach the status page."""
    if public_summary:
        return public_summary
    return {
        "investigating": f"We are investigating a disruption of {service}. Updates will follow here.",
        "identified": f"The cause of the disruption of {service} has been identified and a fix is being applied.",
        "monitoring": f"A fix for the disruption of {service} is in place; we are monitoring the results.",
        "resolved": f"The disruption of {service} has been resolved.",
        "verified": f"The disruption of {service} has been resolved and the service verified healthy.",
    }[phase]


class Link(BaseModel):
    """A link PagerDuty shows on the incident or change (Events API v2 `links`)."""

    href: str
    text: str


class PageRequest(BaseModel):
    incident_id: str
    audience: Audience
    contact: str
    severity: str
    summary: str
    # PagerDuty-style dedup key; the same key never pages twice.
    dedup_key: str
    # Events API v2: trigger a page; acknowledge it (the IC took the incident); resolve it
    action: Literal["trigger", "acknowledge", "resolve"] = "trigger"
    service: str = ""  # the incident's service: the event's source and component
    links: list[Link] = []  # the incident in the Temporal UI (and its report), on a trigger


class ChangeEventRequest(BaseModel):
    """A change CodeBlue made to production (Events API v2 change event): a rollback, an
    upgrade, a restore, a cutover; PagerDuty shows it beside the service's incidents."""

    incident_id: str
    service: str
    kind: Literal["rollback", "upgrade", "restore", "cutover"]
    summary: str
    timestamp: str  # when it was made (ISO 8601, the workflow's clock)
    details: dict[str, str] = {}
    links: list[Link] = []


# Statuspage's incident statuses, in the order an incident moves through them
STATUSPAGE_STATUSES = ("investigating", "identified", "monitoring", "resolved")


def component_status(severity: str, status: str) -> str:
    """A Statuspage component's status for the incident's severity while it is open, and
    `operational` again once it is resolved."""
    if status == "resolved":
        return "operational"
    return {"P0": "major_outage", "P1": "partial_outage"}.get(severity, "degraded_performance")


class StatusPageRequest(BaseModel):
    incident_id: str
    title: str
    status: Literal["investigating", "identified", "monitoring", "resolved"]
    message: str
    impact: str = "major"
    # the services the incident affects: their components (notifications.statuspage_components)
    # take component_status(severity, status)
    services: list[str] = []
    severity: str = ""


class MessageRequest(BaseModel):
    """A stakeholder notice or an incident-channel event."""

    incident_id: str
    kind: str  # stakeholders | channel_open | channel_close | reminder
    text: str
    idempotency_key: str


class Delivery(BaseModel):
    channel: str
    delivered: bool
    skipped: bool = False  # endpoint not configured
    detail: str = ""
    external_id: str | None = None
