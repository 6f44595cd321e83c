"""Starting and reading a complete service recovery (`codeblue redeploy`)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain.recovery import RecoveryInput, recovery_workflow_id
from starters.service import CodeBlueError, _rpc
from workflows.service_recovery import ServiceRecoveryWorkflow


async def start_recovery(client: Client, inp: RecoveryInput, task_queue: str) -> WorkflowHandle:
    wid = recovery_workflow_id(inp.incident_id)
    try:
        return await client.start_workflow(
            ServiceRecoveryWorkflow.run,
            inp,
            id=wid,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            static_summary=f"Service recovery for {inp.incident_id}" + (f" to {inp.target_tag}" if inp.target_tag else ""),
        )
    except WorkflowAlreadyStartedError:
        raise CodeBlueError(f"a service recovery for {inp.incident_id} is already running or done ({wid})") from None
    except RPCError as e:
        raise _rpc(e, wid) from None
