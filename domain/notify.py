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
        "resolved": f"The disruption of {service} has been resolved.",
        "verified": f"The disruption of {service} has been resolved and the service verified healthy.",
    }[phase]


class PageRequest(BaseModel):
    incident_id: str
    audience: Audience
    contact: str
    severity: str
    summary: str
    # PagerDuty-style dedup key; the same key never pages twice.
    dedup_key: str
    # Events API v2: trigger a page, or resolve the one this dedup key triggered
    action: Literal["trigger", "resolve"] = "trigger"
    service: str = ""  # the incident's service: the event's source and component


class StatusPageRequest(BaseModel):
    incident_id: str
    title: str
    status: str  # investigating | identified | monitoring | resolved
    message: str
    impact: str = "major"


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
