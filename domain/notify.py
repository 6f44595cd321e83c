"""Messages to people: pages, status page, stakeholders, incident channel."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel


class Audience(str, Enum):
    ON_CALL = "on_call"
    ENGINEERING_MANAGER = "engineering_manager"
    DEVOPS_LEAD = "devops_lead"
    SECURITY = "security"
    COMMANDER = "commander"


class PageRequest(BaseModel):
    incident_id: str
    audience: Audience
    contact: str
    severity: str
    summary: str
    # PagerDuty-style dedup key; the same key never pages twice.
    dedup_key: str


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
