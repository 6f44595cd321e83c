"""Database recovery: the restore workflow's input and the RDS / secret activities' models.

Nothing here ever carries a database URL or password: secrets stay in the cluster and are
referred to by name and resourceVersion; endpoints are host and port only.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from domain.bounds import Name
from domain.cluster import WAIT_MARGIN_SECONDS
from domain.identity import StartedBy
from domain.incident import IncidentId
from domain.severity import Severity

INCIDENT_TAG = "codeblue:incident"
LATEST = "latest"


class DatabaseRestoreInput(StartedBy):
    incident_id: IncidentId
    # None: the worker's config (aws.rds_instance / aws.rds_snapshot); "latest": newest available
    source: str | None = None
    snapshot: str | None = None
    target: str | None = None  # None: "<source>-restored"
    commander: str | None = None
    severity: Severity = Severity.P1


def restore_workflow_id(incident_id: str) -> str:
    return f"{incident_id}-db-restore"


class RdsInstanceInfo(BaseModel):
    identifier: str
    status: str
    engine: str
    engine_version: str | None = None
    instance_class: str | None = None
    endpoint_host: str | None = None
    endpoint_port: int | None = None
    subnet_group: str | None = None
    security_groups: list[str] = []
    parameter_group: str | None = None
    tags: dict[str, str] = {}
    pending_modifications: dict[str, str] = {}

    @property
    def incident(self) -> str | None:
        return self.tags.get(INCIDENT_TAG)

    @property
    def endpoint(self) -> str:
        return f"{self.endpoint_host}:{self.endpoint_port}" if self.endpoint_host else "(no endpoint yet)"


class RdsPreflightRequest(BaseModel):
    incident_id: str
    source: str
    snapshot: str  # an identifier, or "latest"
    target: str


class RdsPreflightResult(BaseModel):
    source: RdsInstanceInfo
    snapshot_id: str  # resolved ("latest" -> the newest available snapshot of the source)
    snapshot_status: str
    snapshot_engine: str
    snapshot_created: str | None = None
    target_exists: bool = False
    target_incident: str | None = None  # the target's codeblue:incident tag, if it exists


class RdsRestoreRequest(BaseModel):
    incident_id: str
    source: str
    snapshot_id: str
    target: str


class RdsRestoreResult(BaseModel):
    instance: RdsInstanceInfo
    adopted: bool = False  # found from an earlier attempt of this incident; not created again


class RdsWaitRequest(BaseModel):
    target: str
    poll_seconds: float = 30.0
    # one activity attempt polls this long, then fails retryably (RestoreInProgress) so the
    # retry policy carries on polling; worker deaths are noticed through heartbeats
    window_seconds: float = 300.0

    def budget_seconds(self) -> int:
        """One attempt's start-to-close timeout: its polling window plus a last describe."""
        return math.ceil(self.window_seconds) + WAIT_MARGIN_SECONDS


class RdsDeleteRequest(BaseModel):
    incident_id: str
    target: str


class RestoredDbVerifyRequest(BaseModel):
    namespace: str
    secret_name: str
    secret_key: str
    host: str
    port: int
    sanity_query: str | None = None
    connect_timeout_seconds: float = 5.0


class RestoredDbVerifyResult(BaseModel):
    ok: bool
    where: str  # host:port/db, never credentials
    select_one: bool = False
    sanity: str | None = None  # first column of the first row, as text (e.g. a count)
    detail: str


class SecretBackupRequest(BaseModel):
    incident_id: str
    namespace: str
    secret_name: str
    secret_key: str


class SecretBackupRef(BaseModel):
    """Where the old value lives: a backup Secret in the cluster, never the workflow history."""

    namespace: str
    secret_name: str
    secret_key: str
    backup_name: str
    source_resource_version: str | None = None  # the secret's version when it was backed up
    created: bool = True  # False: found from an earlier attempt


class SecretPointRequest(BaseModel):
    backup: SecretBackupRef
    host: str
    port: int = Field(ge=1, le=65535)
    # the secret as it was backed up: changed by anyone since means SecretMoved. None: no check.
    expected_resource_version: str | None = None


class SecretChange(BaseModel):
    secret_name: str
    changed: bool
    resource_version: str | None = None
    where: str  # host:port/db the secret now names


class SecretRestoreRequest(BaseModel):
    backup: SecretBackupRef
    # the version our cutover left: a later change by someone else is not undone. None: no check.
    expected_resource_version: str | None = None


class CancelRestore(BaseModel):
    by: Name
    reason: str = Field(min_length=1, max_length=500)
