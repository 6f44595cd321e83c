"""Starting and resolving the high-memory playbook (`codeblue playbook memory`)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain.memory import MemoryInput, MemoryResolution, memory_workflow_id
from starters.service import CodeBlueError, _rpc, _update
from workflows.high_memory import HighMemoryPlaybook


async def start_memory_playbook(client: Client, inp: MemoryInput, task_queue: str) -> WorkflowHandle:
    wid = memory_workflow_id(inp.incident_id)
    try:
        return await client.start_workflow(
            HighMemoryPlaybook.run, inp, id=wid, task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"High memory playbook for {inp.incident_id}",
        )
    except WorkflowAlreadyStartedError:
        raise CodeBlueError(f"a memory playbook for {inp.incident_id} is already running ({wid})") from None
    except RPCError as e:
        raise _rpc(e, wid) from None


async def resolve_memory(client: Client, workflow_id: str, r: MemoryResolution) -> str:
    return await _update(client, workflow_id, HighMemoryPlaybook.resolve_memory, r, "resolve")
