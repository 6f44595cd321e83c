"""Starting and reading a complete service recovery (`codeblue redeploy`)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from domain.service_recovery import RecoveryInput, recovery_workflow_id
from starters.service import start_procedure
from workflows.service_recovery import ServiceRecoveryWorkflow


async def start_recovery(client: Client, inp: RecoveryInput, task_queue: str) -> WorkflowHandle:
    return await start_procedure(
        client, ServiceRecoveryWorkflow.run, inp, recovery_workflow_id(inp.incident_id), task_queue,
        f"Service recovery for {inp.incident_id}" + (f" to {inp.target_tag}" if inp.target_tag else ""),
        f"a service recovery for {inp.incident_id} is already running or done",
        reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
