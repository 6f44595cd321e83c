"""Starting and resolving the high-memory playbook (`codeblue playbook memory`)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle

from domain.high_memory import MemoryInput, MemoryResolution, memory_workflow_id
from starters.service import execute_update, start_procedure
from workflows.high_memory import HighMemoryPlaybook


async def start_memory_playbook(client: Client, inp: MemoryInput, task_queue: str) -> WorkflowHandle:
    return await start_procedure(
        client, HighMemoryPlaybook.run, inp, memory_workflow_id(inp.incident_id), task_queue,
        f"High memory playbook for {inp.incident_id}", f"a memory playbook for {inp.incident_id} is already running")


async def resolve_memory(client: Client, workflow_id: str, r: MemoryResolution) -> str:
    return await execute_update(client, workflow_id, HighMemoryPlaybook.resolve_memory, r, "resolve")
