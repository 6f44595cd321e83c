"""Alerts as they reach an incident: `add_alert` (one) and `add_alerts` (a batch from the spool)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, Field

from domain.bounds import Name
from domain.identity import Proof

# A batch is one signal: this keeps it far below Temporal's payload size limit
# (2,000-character summaries included).
MAX_BATCH = 200


# Incidents the alert path opens are `ALERT-<keyed hash of the dedup key>`: no other start may
# take the prefix (the API, the CLI and the incident workflow itself refuse it).
ALERT_PREFIX = "ALERT-"


class AlertNotice(BaseModel):
    """One Alertmanager alert, reduced to what the incident timeline needs."""

    source: Name = "alertmanager"
    dedup_key: Name
    alertname: str = Field(max_length=200)
    status: Name  # firing | resolved (a resolved alert is recorded; the IC resolves)
    severity: Name
    service: Name
    summary: str = Field(default="", max_length=2000)
    fingerprint: Name = ""
    starts_at: Name = ""
    received_by: Name = "alertmanager"
    # the API's proof for an alert delivered alone (worker.identity: in the payload, because
    # a signal-with-start's signal carries no header on every server)
    proof: Proof | None = None
    # Set when the API accepted it; identifies an alert without a fingerprint on redelivery.
    ingest_id: Name = ""
    # Alertmanager's group (a digest of its groupKey) and how many of its alerts it left out
    # (`truncatedAlerts`, its max_alerts): set on one notice per incident per delivery
    group: Name = ""
    group_truncated: int = Field(default=0, ge=0, le=10**9)


class AlertBatch(BaseModel):
    """Alerts of one dedup key, in the order the API accepted them."""

    notices: list[AlertNotice] = Field(min_length=1, max_length=MAX_BATCH)
    proof: Proof | None = None  # the API's proof for the batch (see AlertNotice.proof)


class AlertLedger:
    """What an incident has recorded of its alerts. Alertmanager re-sends a firing alert every
    repeat interval and the spool may deliver a batch twice: only a change of an alert's
    status counts. Past `listed_max` alerts on the timeline the rest are counted, not listed,
    so a storm on one key cannot bloat the report. Deterministic (workflow state)."""

    def __init__(self, limit: int = 10_000, listed_max: int = 500) -> None:
        self.limit, self.listed_max = limit, listed_max
        self.status: OrderedDict[str, str] = OrderedDict()
        self.received = 0
        self.repeats = 0
        self.listed = 0
        self.unlisted = 0
        self.truncated: OrderedDict[str, int] = OrderedDict()  # per Alertmanager group: its latest count

    def note_truncated(self, n: AlertNotice, groups_max: int = 200) -> bool:
        """True when a group's count of alerts Alertmanager left out is new or changed
        (it re-sends the group with the same count every group interval)."""
        if not n.group_truncated or self.truncated.get(n.group) == n.group_truncated:
            return False
        self.truncated[n.group] = n.group_truncated
        self.truncated.move_to_end(n.group)
        while len(self.truncated) > groups_max:
            self.truncated.popitem(last=False)
        return True

    def is_new(self, n: AlertNotice) -> bool:
        self.received += 1
        ident = n.fingerprint or n.ingest_id
        if not ident:
            return True
        if self.status.get(ident) == n.status:
            self.repeats += 1
            return False
        self.status[ident] = n.status
        self.status.move_to_end(ident)
        while len(self.status) > self.limit:
            self.status.popitem(last=False)
        return True

    def to_list(self) -> bool:
        """A new alert: True while the timeline has room for it; else it is only counted."""
        if self.listed < self.listed_max:
            self.listed += 1
            return True
        self.unlisted += 1
        return False

    def to_state(self, keep: int = 2_000) -> dict[str, Any]:
        """For continue-as-new: the counts and the newest `keep` alert identities (an older
        alert re-sent after that is listed again: harmless, and bounded)."""
        idents = list(self.status.items())[-keep:]
        return {**self.counts(), "status": idents, **({"groups_truncated": list(self.truncated.items())} if self.truncated else {})}

    def restore(self, st: dict[str, Any]) -> None:
        for k in ("received", "listed", "unlisted", "repeats"):
            setattr(self, k, int(st.get(k, 0)))
        self.status = OrderedDict((str(i), str(v)) for i, v in st.get("status") or [])
        self.truncated = OrderedDict((str(g), int(c)) for g, c in st.get("groups_truncated") or [])

    def counts(self) -> dict[str, int]:
        """The report's `alerts`; `truncated` (alerts Alertmanager left out of their groups, at
        their groups' latest counts) only when it left some out."""
        out = {"received": self.received, "listed": self.listed, "unlisted": self.unlisted, "repeats": self.repeats}
        if self.truncated:
            out["truncated"] = sum(self.truncated.values())
        return out
