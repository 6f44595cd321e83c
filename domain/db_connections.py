"""The "Database Connection Issues" playbook: its input, workflow ID and what counts as down."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from domain.config import CodeBlueConfig
from domain.incident import INCIDENT_ID_RE
from domain.severity import Severity

# RDS states in which the instance cannot serve connections: a restart of the gateway cannot
# help, a restore from snapshot might (anything else, e.g. "modifying", still serves)
INSTANCE_DOWN_STATES = frozenset({
    "stopped", "stopping", "failed", "deleting", "storage-full", "restore-error",
    "inaccessible-encryption-credentials", "incompatible-network", "incompatible-parameters",
    "incompatible-restore",
})
# gateway log patterns the playbook counts (lines themselves never leave the worker)
POOL_EXHAUSTED_PATTERN = "pool exhausted"


class DbConnectionsInput(BaseModel):
    incident_id: str
    requested_by: str = "unknown"
    commander: str | None = None  # None: requested_by decides
    severity: Severity = Severity.P1
    # verification passes when the gateway's last log lines hold at most this many connection errors
    max_connection_errors: int = Field(default=0, ge=0)
    config: CodeBlueConfig | None = None

    @field_validator("incident_id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        if not INCIDENT_ID_RE.match(v):
            raise ValueError("incident ID must be 1-64 letters, digits, '.', '_' or '-'")
        return v


def db_connections_workflow_id(incident_id: str) -> str:
    return f"{incident_id}-db-connections"
