"""An alert as it reaches an incident: the `add_alert` signal's one input."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AlertNotice(BaseModel):
    """One Alertmanager alert, reduced to what the incident timeline needs."""

    source: str = "alertmanager"
    dedup_key: str
    alertname: str = Field(max_length=200)
    status: str  # firing | resolved (a resolved alert is recorded; the IC resolves)
    severity: str
    service: str
    summary: str = Field(default="", max_length=2000)
    fingerprint: str = ""
    starts_at: str = ""
    received_by: str = "alertmanager"
