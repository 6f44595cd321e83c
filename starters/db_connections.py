"""Starting the database connection playbook (`codeblue playbook db-connections`)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle

from domain.db_connections import DbConnectionsInput, db_connections_workflow_id
from starters.service import start_procedure
from workflows.db_connections import DatabaseConnectionPlaybook


async def start_db_connections(client: Client, inp: DbConnectionsInput, task_queue: str) -> WorkflowHandle:
    return await start_procedure(
        client, DatabaseConnectionPlaybook.run, inp, db_connections_workflow_id(inp.incident_id), task_queue,
        f"Database connection playbook for {inp.incident_id}",
        f"a database connection playbook for {inp.incident_id} is already running")
