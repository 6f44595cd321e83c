"""What the CLI (and later the API) do, as plain async functions with one-line errors."""

from __future__ import annotations

from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain import search_attributes as sa
from domain.alerts import ALERT_PREFIX
from domain.incident import (
    CommanderAssignment,
    Decision,
    DecisionBatch,
    DecisionResult,
    Escalation,
    IncidentInput,
    IncidentReport,
    Note,
    Resolution,
    ResolutionResult,
    ServiceNaming,
)
from starters.errors import CodeBlueError
from workflows.incident_response import IncidentResponseWorkflow


def ui_link(ui_base: str, namespace: str, incident_id: str) -> str:
    return f"{ui_base.rstrip('/')}/namespaces/{namespace}/workflows/{incident_id}"


async def start_incident(client: Client, inp: IncidentInput, task_queue: str) -> WorkflowHandle:
    if inp.incident_id.startswith(ALERT_PREFIX):
        raise CodeBlueError(f"incident IDs starting {ALERT_PREFIX} are the alert path's: use another --id")
    try:
        return await client.start_workflow(
            IncidentResponseWorkflow.run,
            inp,
            id=inp.incident_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            # a refused start fails: its ID is free again for the real one (README, "Trust model")
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            static_summary=f"{inp.severity.value}: {inp.title}",
            search_attributes=initial_search_attributes(inp),
        )
    except WorkflowAlreadyStartedError:
        raise CodeBlueError(
            f"incident {inp.incident_id} already exists (open, or closed without failing); use another --id"
        ) from None
    except RPCError as e:
        raise rpc_error(e, inp.incident_id) from None


def initial_search_attributes(inp: IncidentInput):
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.SEVERITY, inp.severity.value),
            SearchAttributePair(sa.PHASE, "open"),
            SearchAttributePair(sa.SERVICE, inp.service),
            SearchAttributePair(sa.COMMANDER, inp.commander or "unassigned"),
        ]
    )


async def _handle(client: Client, incident_id: str) -> WorkflowHandle:
    h = client.get_workflow_handle(incident_id)
    try:
        await h.describe()
    except RPCError as e:
        raise rpc_error(e, incident_id) from None
    return h


async def _open_handle(client: Client, incident_id: str) -> WorkflowHandle:
    h = client.get_workflow_handle(incident_id)
    try:
        d = await h.describe()
    except RPCError as e:
        raise rpc_error(e, incident_id) from None
    if d.status != WorkflowExecutionStatus.RUNNING:
        closed = d.status.name.lower() if d.status is not None else "status unknown"
        raise CodeBlueError(f"incident {incident_id} is closed ({closed})")
    return h


def rpc_error(e: RPCError, incident_id: str) -> CodeBlueError:
    if e.status == RPCStatusCode.NOT_FOUND:
        return CodeBlueError(f"unknown incident {incident_id}")
    if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return CodeBlueError(f"Temporal server unreachable: {e.message}")
    return CodeBlueError(f"Temporal refused the request: {e.message}")


async def start_procedure(client: Client, run: Any, inp: Any, workflow_id: str, task_queue: str, summary: str,
                          already: str, reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE
                          ) -> WorkflowHandle:
    """Playbooks and recoveries run once per incident at a time: a second start is refused
    with `already` ("... is already running"), never joined."""
    try:
        return await client.start_workflow(run, inp, id=workflow_id, task_queue=task_queue,
                                           id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                                           id_reuse_policy=reuse, static_summary=summary)
    except WorkflowAlreadyStartedError:
        raise CodeBlueError(f"{already} ({workflow_id})") from None
    except RPCError as e:
        raise rpc_error(e, workflow_id) from None


async def status(client: Client, incident_id: str) -> IncidentReport:
    h = await _handle(client, incident_id)
    try:
        return await h.query(IncidentResponseWorkflow.status)
    except RPCError as e:
        raise rpc_error(e, incident_id) from None


async def decide(client: Client, incident_id: str, decision: Decision) -> DecisionResult:
    return await execute_update(client, incident_id, IncidentResponseWorkflow.decide, decision, "decision")


async def decide_many(client: Client, incident_id: str, batch: DecisionBatch) -> list[DecisionResult]:
    """Several decisions at once (all or none): approved ones run in the order given."""
    return await execute_update(client, incident_id, IncidentResponseWorkflow.decide_many, batch, "decision")


async def resolve(client: Client, incident_id: str, resolution: Resolution) -> ResolutionResult:
    return await execute_update(client, incident_id, IncidentResponseWorkflow.resolve, resolution, "resolve")


async def name_service(client: Client, incident_id: str, n: ServiceNaming) -> str:
    return await execute_update(client, incident_id, IncidentResponseWorkflow.name_service, n, "name service")


async def execute_update(client: Client, incident_id: str, update, arg, what: str):
    """An update on an open incident; a validator's refusal becomes a one-line error."""
    h = await _open_handle(client, incident_id)
    try:
        return await h.execute_update(update, arg)
    except WorkflowUpdateFailedError as e:
        raise CodeBlueError(f"{what} rejected: {root_cause(e)}") from None
    except RPCError as e:
        raise rpc_error(e, incident_id) from None


async def assign_commander(client: Client, incident_id: str, a: CommanderAssignment) -> None:
    h = await _open_handle(client, incident_id)
    await h.signal(IncidentResponseWorkflow.assign_commander, a)


async def escalate(client: Client, incident_id: str, e: Escalation) -> None:
    h = await _open_handle(client, incident_id)
    await h.signal(IncidentResponseWorkflow.escalate, e)


async def add_note(client: Client, incident_id: str, n: Note) -> None:
    h = await _open_handle(client, incident_id)
    await h.signal(IncidentResponseWorkflow.add_note, n)


async def list_open(client: Client) -> list[dict[str, str]]:
    out = []
    try:
        async for w in client.list_workflows(
            "WorkflowType = 'IncidentResponseWorkflow' AND ExecutionStatus = 'Running'"
        ):
            attrs = w.typed_search_attributes
            out.append(
                {
                    "incident_id": w.id,
                    "severity": attrs.get(sa.SEVERITY) or "?",
                    "phase": attrs.get(sa.PHASE) or "?",
                    "service": attrs.get(sa.SERVICE) or "?",
                    "commander": attrs.get(sa.COMMANDER) or "?",
                    "started": w.start_time.isoformat(timespec="seconds") if w.start_time else "?",
                }
            )
    except RPCError as e:
        raise rpc_error(e, "*") from None
    return out


def root_cause(e: BaseException) -> str:
    cur: BaseException | None = e
    while cur is not None:
        if isinstance(cur, ApplicationError):
            return cur.message
        cur = cur.__cause__
    return str(e)
