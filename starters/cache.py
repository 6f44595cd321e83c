"""Starting the Redis cache playbook (`codeblue playbook cache`)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain.cache import CacheInput, FlushConfirmation, cache_workflow_id
from starters.service import CodeBlueError, _rpc, _update
from workflows.redis_cache import RedisCachePlaybook


async def start_cache_playbook(client: Client, inp: CacheInput, task_queue: str) -> WorkflowHandle:
    wid = cache_workflow_id(inp.incident_id)
    try:
        return await client.start_workflow(
            RedisCachePlaybook.run,
            inp,
            id=wid,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"Redis cache playbook for {inp.incident_id}",
        )
    except WorkflowAlreadyStartedError:
        raise CodeBlueError(f"a cache playbook for {inp.incident_id} is already running ({wid})") from None
    except RPCError as e:
        raise _rpc(e, wid) from None


async def confirm_flush(client: Client, workflow_id: str, c: FlushConfirmation) -> str:
    return await _update(client, workflow_id, RedisCachePlaybook.confirm_flush, c, "confirmation")
