"""Starting the Redis cache playbook (`codeblue playbook cache`)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle

from domain.redis_cache import CacheInput, FlushConfirmation, cache_workflow_id
from starters.service import execute_update, start_procedure
from workflows.redis_cache import RedisCachePlaybook


async def start_cache_playbook(client: Client, inp: CacheInput, task_queue: str) -> WorkflowHandle:
    return await start_procedure(
        client, RedisCachePlaybook.run, inp, cache_workflow_id(inp.incident_id), task_queue,
        f"Redis cache playbook for {inp.incident_id}", f"a cache playbook for {inp.incident_id} is already running")


async def confirm_flush(client: Client, workflow_id: str, c: FlushConfirmation) -> str:
    return await execute_update(client, workflow_id, RedisCachePlaybook.confirm_flush, c, "confirmation")
