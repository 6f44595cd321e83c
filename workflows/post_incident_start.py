"""How an incident starts its post-incident work: a child that outlives it, one per incident
run (`<ID>-postmortem[-N]`). A helper the incident workflow imports passed through, so the
post-incident workflow's module is not re-imported for every incident run."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from domain.incident import IncidentRef, IncidentReport
    from domain.post_incident import PostIncidentInput, postmortem_workflow_id
    from workflows.post_incident import PostIncidentWorkflow


async def start_post_incident(report: IncidentReport, commander: str | None, ordinal: int = 1,
                              incident_run_id: str | None = None, by_reference: bool = False) -> str:
    """From a workflow that just resolved an incident: start its post-incident work as a
    child that outlives the parent (ABANDON). Returns the child's workflow ID. `by_reference`:
    the child reads the report from this run instead of getting it in its input."""
    wid = postmortem_workflow_id(report.incident_id, ordinal)
    await workflow.start_child_workflow(
        PostIncidentWorkflow.run,
        PostIncidentInput(
            incident_id=report.incident_id,
            report=report,
            commander=commander,
            resolved_at=workflow.now().isoformat(),
            incident_run_id=incident_run_id,
        ) if not by_reference else PostIncidentInput(
            incident_id=report.incident_id,
            report_ref=IncidentRef(incident_id=report.incident_id, run_id=incident_run_id),
            commander=commander,
            resolved_at=workflow.now().isoformat(),
            incident_run_id=incident_run_id,
        ),
        id=wid,
        parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"Post-incident: {report.incident_id}",
    )
    return wid


MAX_POSTMORTEMS = 50


async def start_own_post_incident(report: IncidentReport, commander: str | None) -> str | None:
    """One post-mortem per incident run: an alert key that recurs opens new runs of the same
    workflow ID, and each gets the next free `<ID>-postmortem[-N]`. A failure is never the
    incident's: returns None and the caller records it."""
    run_id = workflow.info().run_id
    for ordinal in range(1, MAX_POSTMORTEMS + 1):
        try:
            return await start_post_incident(report, commander, ordinal, run_id, by_reference=True)
        except WorkflowAlreadyStartedError:
            continue  # an earlier run of this ID has its post-mortem there
        except FailureError as e:  # any other refusal of the start: recorded, the incident still resolves
            workflow.logger.warning("post-incident start failed: %s", type(e).__name__)
            return None
    return None
