"""Starting and steering a DatabaseRestoreWorkflow, as plain async functions with one-line errors."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain import search_attributes as sa
from domain.database_restore import CancelRestore, DatabaseRestoreInput, restore_workflow_id
from domain.incident import IncidentReport
from starters.service import CodeBlueError, root_cause, rpc_error
from workflows.database_restore import DatabaseRestoreWorkflow


async def start_restore(client: Client, inp: DatabaseRestoreInput, task_queue: str) -> WorkflowHandle:
    wid = restore_workflow_id(inp.incident_id)
    try:
        return await client.start_workflow(
            DatabaseRestoreWorkflow.run,
            inp,
            id=wid,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,  # a refused start fails
            static_summary=f"Database restore for {inp.incident_id}",
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.SEVERITY, inp.severity.value),
                SearchAttributePair(sa.PHASE, "open"),
                SearchAttributePair(sa.SERVICE, "database"),
                SearchAttributePair(sa.COMMANDER, inp.commander or "unassigned"),
            ]),
        )
    except WorkflowAlreadyStartedError:
        raise CodeBlueError(f"a database restore for incident {inp.incident_id} already exists ({wid})") from None
    except RPCError as e:
        raise rpc_error(e, wid) from None


async def restore_status(client: Client, incident_id: str) -> IncidentReport:
    h = client.get_workflow_handle(restore_workflow_id(incident_id))
    try:
        return await h.query(DatabaseRestoreWorkflow.status)
    except RPCError as e:
        raise rpc_error(e, restore_workflow_id(incident_id)) from None


async def rds_progress(client: Client, incident_id: str) -> dict[str, Any]:
    """What the wait is doing now: the last RDS status the polling activity reported."""
    h = client.get_workflow_handle(restore_workflow_id(incident_id))
    try:
        desc = await h.describe()
    except RPCError as e:
        raise rpc_error(e, restore_workflow_id(incident_id)) from None
    out: dict[str, Any] = {"rds_status": None, "attempt": None}
    for pa in desc.raw_description.pending_activities:
        if pa.activity_type.name != "rds_wait_available":
            continue
        out["attempt"] = pa.attempt
        if pa.heartbeat_details.payloads:
            details = await client.data_converter.decode(pa.heartbeat_details.payloads)
            if details and isinstance(details[0], dict):
                out["rds_status"] = details[0].get("status")
        elif pa.last_failure.message:
            out["rds_status"] = pa.last_failure.message.rsplit(" ", 1)[-1]
    return out


async def cancel_restore(client: Client, incident_id: str, c: CancelRestore) -> str:
    h = client.get_workflow_handle(restore_workflow_id(incident_id))
    try:
        return await h.execute_update(DatabaseRestoreWorkflow.cancel_restore, c)
    except WorkflowUpdateFailedError as e:
        raise CodeBlueError(f"cancel rejected: {root_cause(e)}") from None
    except RPCError as e:
        raise rpc_error(e, restore_workflow_id(incident_id)) from None
