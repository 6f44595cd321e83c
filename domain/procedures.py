"""Every runbook procedure, described once: its key (the CLI's and the API's name), its
workflow type, input, workflow ID, the proposal that starts it from an incident, the commands
a person sends it, and its drill scenario. The worker's registration, the identity
interceptor's handler table, the incident's playbook starts and the assessment's proposals,
the API's reserved IDs and the drill registry are read from here (tests/domain/test_procedures.py
holds each of them to it): adding a procedure is its own modules and one entry below."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from domain.database_restore import DatabaseRestoreInput, restore_workflow_id
from domain.db_connections import DbConnectionsInput, db_connections_workflow_id
from domain.high_memory import MemoryInput, memory_workflow_id
from domain.identity import StartedBy
from domain.incident import IncidentInput
from domain.post_incident import PostIncidentInput, postmortem_workflow_id
from domain.redis_cache import CacheInput, cache_workflow_id
from domain.service_recovery import RecoveryInput, recovery_workflow_id

# what the IC sends every procedure with proposals (workflows.approvals)
DECISIONS = frozenset({"approve", "reject", "decide", "decide_many"})


@dataclass(frozen=True)
class Procedure:
    key: str  # `codeblue playbook KEY` / `POST /procedures/KEY`
    runbook: str  # the section of RUNBOOK.md it runs
    workflow: str  # the Temporal workflow type
    input: type[StartedBy]
    workflow_id: Callable[[str], str]  # from the incident's ID
    suffix: str  # what that ID adds to the incident's (none for the incident itself)
    handlers: frozenset[str]  # the signals and updates a person sends it (each needs a proof)
    proposal: str | None = None  # the incident's proposal that starts it as a child
    scenario: str | None = None  # its drill scenario (`codeblue drill SCENARIO`)


INCIDENT = Procedure(
    key="incident", runbook="P0/P1 Incident Response", workflow="IncidentResponseWorkflow", input=IncidentInput,
    workflow_id=lambda incident_id: incident_id, suffix="",
    handlers=DECISIONS | {"resolve", "assign_commander", "escalate", "add_note", "name_service"}, scenario="bad-deploy")
DB_CONNECTIONS = Procedure(
    key="db-connections", runbook="Database Connection Issues", workflow="DatabaseConnectionPlaybook",
    input=DbConnectionsInput, workflow_id=db_connections_workflow_id, suffix="-db-connections",
    handlers=DECISIONS, proposal="db-connections-playbook", scenario="db-connections")
MEMORY = Procedure(
    key="memory", runbook="High Memory Usage", workflow="HighMemoryPlaybook", input=MemoryInput,
    workflow_id=memory_workflow_id, suffix="-memory", handlers=DECISIONS | {"resolve_memory"},
    proposal="memory-playbook", scenario="memory-leak")
CACHE = Procedure(
    key="cache", runbook="Redis Cache Issues", workflow="RedisCachePlaybook", input=CacheInput,
    workflow_id=cache_workflow_id, suffix="-cache", handlers=DECISIONS | {"confirm_flush"},
    proposal="cache-playbook", scenario="cache-poisoned")
DB_RESTORE = Procedure(
    key="db-restore", runbook="Database Recovery", workflow="DatabaseRestoreWorkflow", input=DatabaseRestoreInput,
    workflow_id=restore_workflow_id, suffix="-db-restore", handlers=DECISIONS | {"cancel_restore"},
    scenario="db-outage")
REDEPLOY = Procedure(
    key="redeploy", runbook="Complete Service Recovery", workflow="ServiceRecoveryWorkflow", input=RecoveryInput,
    workflow_id=recovery_workflow_id, suffix="-redeploy", handlers=DECISIONS, proposal="redeploy",
    scenario="failed-redeploy")
POSTMORTEM = Procedure(
    key="postmortem", runbook="Post-Incident", workflow="PostIncidentWorkflow", input=PostIncidentInput,
    workflow_id=postmortem_workflow_id, suffix="-postmortem",
    handlers=frozenset({"postmortem_held", "add_action_item", "complete_action_item"}))

PROCEDURES: dict[str, Procedure] = {p.key: p for p in (
    INCIDENT, DB_CONNECTIONS, MEMORY, CACHE, DB_RESTORE, REDEPLOY, POSTMORTEM)}
BY_WORKFLOW: dict[str, Procedure] = {p.workflow: p for p in PROCEDURES.values()}

# The commands a person sends, over every procedure: worker.identity checks a proof for each.
HUMAN_HANDLERS: frozenset[str] = frozenset().union(*(p.handlers for p in PROCEDURES.values()))
# Workflow IDs CodeBlue derives from an incident's (also with -N after them): no incident may take one.
DERIVED_SUFFIXES: tuple[str, ...] = (*(p.suffix for p in PROCEDURES.values() if p.suffix), "-reopened")
