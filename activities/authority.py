"""Who decides for an incident, read from the incident's own workflow: a playbook, restore or
redeploy takes its IC from there, never from whoever started it."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.incident import IncidentAuthority, IncidentRef, IncidentReport
from domain.post_incident import Reopen, ReopenRequest

INCIDENT_WORKFLOW = "IncidentResponseWorkflow"


@activity.defn
async def incident_authority(ref: IncidentRef) -> IncidentAuthority:
    """The incident's IC through the worker's own Temporal client (`status` query)."""
    handle = activity.client().get_workflow_handle(ref.incident_id)
    try:
        desc = await handle.describe()
        if desc.workflow_type != INCIDENT_WORKFLOW:
            return IncidentAuthority(exists=False)
        report = await handle.query("status", result_type=IncidentReport)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return IncidentAuthority(exists=False)
        raise ApplicationError(f"cannot read incident {ref.incident_id}: {e.message}") from None
    return IncidentAuthority(exists=True, open=desc.status == WorkflowExecutionStatus.RUNNING,
                             commander=report.commander, service=report.service)


@activity.defn
async def incident_report(ref: IncidentRef) -> IncidentReport:
    """The report of one incident run (its `status` query): a post-incident child reads it
    by reference instead of carrying it in its start input."""
    handle = activity.client().get_workflow_handle(ref.incident_id, run_id=ref.run_id)
    try:
        return await handle.query("status", result_type=IncidentReport)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise ApplicationError(f"incident {ref.incident_id} (run {ref.run_id}) not found", type="NotFound",
                                   non_retryable=True) from None
        raise ApplicationError(f"cannot read incident {ref.incident_id}: {e.message}") from None


@activity.defn
async def reopen_incident(r: ReopenRequest) -> None:
    """Tell an incident run that its post-resolution verification failed: a signal sent through
    the worker's own client, so it carries a proof like any command (the test server drops
    headers on a workflow's external signals). A closed run fails non-retryably."""
    handle = activity.client().get_workflow_handle(r.incident_id, run_id=r.run_id)
    try:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            raise ApplicationError(f"incident {r.incident_id} is closed", type="IncidentClosed", non_retryable=True)
        await handle.signal("reopen", Reopen(reason=r.reason))
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise ApplicationError(f"incident {r.incident_id} not found", type="IncidentClosed", non_retryable=True) from None
        raise ApplicationError(f"cannot signal incident {r.incident_id}: {e.message}") from None
