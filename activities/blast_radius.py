"""A mutating step's lease, asked of the blast-radius guard (workflows.blast_radius) through the
worker's own client: the worker's config decides the policy and which guard (its scope, else
its task queue), whatever the asking workflow sent."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.heartbeat import Heartbeater
from domain.blast_radius import (
    GUARD_WORKFLOW,
    BlastRadiusConfig,
    GuardInput,
    GuardState,
    LeaseAnswer,
    LeaseDone,
    Mutation,
    Rule,
    guard_id,
)


class BlastRadiusActivities:
    def __init__(self, policy: BlastRadiusConfig) -> None:
        self.policy = policy

    def _scope(self) -> str:
        return self.policy.scope or activity.info().task_queue

    async def _guard(self, client: Client) -> WorkflowHandle:
        """The scope's guard, started if none runs; an ID taken by anything else is refused."""
        scope = self._scope()
        gid = guard_id(scope)
        try:
            await client.start_workflow(
                GUARD_WORKFLOW, GuardInput(scope=scope, policy=self.policy, requested_by="codeblue"), id=gid,
                task_queue=activity.info().task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=f"blast-radius guard of {scope}")
            handle = client.get_workflow_handle(gid)
            desc = await handle.describe()
        except RPCError as e:
            raise ApplicationError(f"cannot reach the blast-radius guard {gid}: {e.message}") from None
        if desc.workflow_type != GUARD_WORKFLOW:
            raise ApplicationError(f"the blast-radius guard's ID {gid} is taken by a {desc.workflow_type} workflow: "
                                   "terminate it, then retry the step", type="GuardTaken", non_retryable=True)
        return handle

    @activity.defn
    async def acquire_target(self, ask: Mutation) -> LeaseAnswer:
        info = activity.info()
        ask = ask.model_copy(update={"policy": self.policy, "by": "codeblue", "by_roles": [],
                                     "workflow_id": info.workflow_id, "run_id": info.workflow_run_id})
        client = activity.client()
        async with Heartbeater():
            handle = await self._guard(client)
            await self._free_if_stale(client, handle, ask)
            answer = await self._ask(handle, ask)
            if answer.rule == Rule.HELD and answer.holder_run and await _closed(client, *answer.holder_run):
                # its holder's run closed while this step waited: stale too
                await self._let_go(handle, LeaseDone(target=ask.target, holder=answer.holder or ""))
                answer = await self._ask(handle, ask)
        return answer

    async def _free_if_stale(self, client: Client, handle: WorkflowHandle, ask: Mutation) -> None:
        """A lease whose run ended without letting go (killed, terminated, timed out) is let go
        of before the ask, rather than waited for until it expires."""
        try:
            state = await handle.query("blast_radius", result_type=GuardState)
        except RPCError:
            return  # the ask itself says what is wrong
        lease = state.leases.get(ask.target)
        if lease is not None and lease.holder != ask.holder and await _closed(client, lease.workflow_id, lease.run_id):
            await self._let_go(handle, LeaseDone(target=ask.target, holder=lease.holder))

    async def _ask(self, handle: WorkflowHandle, ask: Mutation) -> LeaseAnswer:
        try:
            return await handle.execute_update("acquire_target", ask, result_type=LeaseAnswer)
        except RPCError as e:
            raise ApplicationError(f"the blast-radius guard did not answer: {e.message}") from None

    async def _let_go(self, handle: WorkflowHandle, done: LeaseDone) -> bool:
        try:
            return bool(await handle.execute_update("release_target", done, result_type=bool))
        except RPCError as e:
            raise ApplicationError(f"the blast-radius guard did not answer: {e.message}") from None

    @activity.defn
    async def release_target(self, done: LeaseDone) -> bool:
        handle = await self._guard(activity.client())
        return await self._let_go(handle, done.model_copy(update={"by": "codeblue", "by_roles": []}))


async def _closed(client: Client, workflow_id: str, run_id: str) -> bool:
    if not workflow_id:
        return False
    try:
        desc = await client.get_workflow_handle(workflow_id, run_id=run_id or None).describe()
    except RPCError as e:
        return e.status == RPCStatusCode.NOT_FOUND
    return desc.status != WorkflowExecutionStatus.RUNNING
