"""The "Database Connection Issues" playbook: its input, workflow ID and what counts as down."""

from __future__ import annotations

from pydantic import Field

from domain.identity import StartedBy
from domain.incident import IncidentId
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


class DbConnectionsInput(StartedBy):
    incident_id: IncidentId
    commander: str | None = None  # None: requested_by decides
    severity: Severity = Severity.P1
    # verification passes when the gateway's last log lines hold at most this many connection errors
    max_connection_errors: int = Field(default=0, ge=0)


def db_connections_workflow_id(incident_id: str) -> str:
    return f"{incident_id}-db-connections"
