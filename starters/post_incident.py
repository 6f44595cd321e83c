"""Post-incident operations for the CLI (and later the API): one-line errors, no tracebacks."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.post_incident import (
    ActionItem,
    CloseActionItem,
    NewActionItem,
    PostIncidentInput,
    PostmortemHeld,
    postmortem_workflow_id,
)
from domain.postmortem import render_postmortem
from starters import service
from starters.service import CodeBlueError
from workflows.post_incident import READING_REPORT, PostIncidentWorkflow


async def start(client: Client, incident_id: str, task_queue: str, commander: str | None = None) -> WorkflowHandle:
    """Start post-incident work for a resolved incident (what the P0 does itself on resolution)."""
    report = await service.status(client, incident_id)
    if report.status == "open":
        raise CodeBlueError(f"incident {incident_id} is still open; resolve it first")
    wid = report.postmortem_workflow_id or postmortem_workflow_id(incident_id)
    try:
        return await client.start_workflow(
            PostIncidentWorkflow.run,
            PostIncidentInput(incident_id=incident_id, report=report, commander=commander),
            id=wid,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,  # a refused start fails
            static_summary=f"Post-incident: {incident_id}",
        )
    except WorkflowAlreadyStartedError:
        raise CodeBlueError(f"post-incident work for {incident_id} already exists ({wid})") from None
    except RPCError as e:
        raise _rpc(e, incident_id) from None


async def postmortem_id(client: Client, incident_id: str) -> str:
    """The post-mortem of the incident's latest run, as its report names it (a recurring alert
    key has one per run); the first run's ID when the incident names none or is unknown."""
    try:
        report = await service.status(client, incident_id)
    except CodeBlueError:
        return postmortem_workflow_id(incident_id)
    return report.postmortem_workflow_id or postmortem_workflow_id(incident_id)


async def draft(client: Client, incident_id: str) -> str:
    """The post-incident workflow's draft; without one, a draft from the incident's own report."""
    h = client.get_workflow_handle(await postmortem_id(client, incident_id))
    try:
        for _ in range(50):  # a post-mortem that just started reads the incident's report first
            text = await h.query(PostIncidentWorkflow.postmortem)
            if READING_REPORT not in text.split("\n", 1)[0]:
                return text
            await asyncio.sleep(0.2)
        return text
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise _rpc(e, incident_id) from None
    return render_postmortem(await service.status(client, incident_id))


async def held(client: Client, incident_id: str, h: PostmortemHeld) -> str:
    return await _update(client, incident_id, PostIncidentWorkflow.postmortem_held, h, "post-mortem held")


async def add_item(client: Client, incident_id: str, n: NewActionItem) -> ActionItem:
    return await _update(client, incident_id, PostIncidentWorkflow.add_action_item, n, "action item")


async def close_item(client: Client, incident_id: str, c: CloseActionItem) -> ActionItem:
    return await _update(client, incident_id, PostIncidentWorkflow.complete_action_item, c, "action item")


async def _update(client: Client, incident_id: str, update, arg, what: str):
    h = client.get_workflow_handle(await postmortem_id(client, incident_id))
    try:
        return await h.execute_update(update, arg)
    except WorkflowUpdateFailedError as e:
        raise CodeBlueError(f"{what} rejected: {service.root_cause(e)}") from None
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND and await _closed(h):
            raise CodeBlueError(f"post-incident work for {incident_id} is complete") from None
        raise _rpc(e, incident_id) from None


async def _closed(h: WorkflowHandle) -> bool:
    """An update to a closed workflow answers NOT_FOUND: tell that apart from a missing one."""
    try:
        d = await h.describe()
    except RPCError:
        return False
    return d.status != WorkflowExecutionStatus.RUNNING


def _rpc(e: RPCError, incident_id: str) -> CodeBlueError:
    if e.status == RPCStatusCode.NOT_FOUND:
        return CodeBlueError(
            f"no post-incident work for {incident_id} (start it: codeblue postmortem start {incident_id})"
        )
    return service.rpc_error(e, incident_id)
