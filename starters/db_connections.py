"""Starting the database connection playbook (`codeblue playbook db-connections`)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain.db_connections import DbConnectionsInput, db_connections_workflow_id
from starters.service import CodeBlueError, _rpc
from workflows.db_connections import DatabaseConnectionPlaybook


async def start_db_connections(client: Client, inp: DbConnectionsInput, task_queue: str) -> WorkflowHandle:
    wid = db_connections_workflow_id(inp.incident_id)
    try:
        return await client.start_workflow(
            DatabaseConnectionPlaybook.run, inp, id=wid, task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"Database connection playbook for {inp.incident_id}",
        )
    except WorkflowAlreadyStartedError:
        raise CodeBlueError(f"a database connection playbook for {inp.incident_id} is already running ({wid})") from None
    except RPCError as e:
        raise _rpc(e, wid) from None
