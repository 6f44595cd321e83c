"""Every workflow type a CodeBlue worker registers, importable without any client library
(the replay test, `codeblue upgrade check` and the worker share it)."""

from __future__ import annotations

from typing import Any

from workflows.blast_radius import BlastRadiusGuard
from workflows.database_restore import DatabaseRestoreWorkflow
from workflows.db_connections import DatabaseConnectionPlaybook
from workflows.high_memory import HighMemoryPlaybook
from workflows.incident_response import IncidentResponseWorkflow
from workflows.post_incident import PostIncidentWorkflow
from workflows.redis_cache import RedisCachePlaybook
from workflows.service_recovery import ServiceRecoveryWorkflow

WORKFLOWS: list[type[Any]] = [
    IncidentResponseWorkflow, ServiceRecoveryWorkflow, PostIncidentWorkflow, DatabaseRestoreWorkflow,
    RedisCachePlaybook, HighMemoryPlaybook, DatabaseConnectionPlaybook, BlastRadiusGuard,
]
