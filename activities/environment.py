"""Hands the worker's config to a workflow, so the worker, not the starter, decides where to act;
and refuses a start whose proof an earlier run of the same workflow ID already used."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.catalog import for_service
from domain.config import CodeBlueConfig, EnvironmentQuery
from domain.identity import HEADER

# the original run started within this long of its proof being signed (clock skew included)
START_WINDOW = timedelta(minutes=10)


async def start_proof_used_by(client: Client, q: EnvironmentQuery) -> str | None:
    """The earlier run of this workflow ID that started with the same proof, if any: only runs
    started around the proof's signing need reading, however often the ID was used."""
    assert q.workflow_id and q.start_proof and q.start_issued_at is not None
    at = datetime.fromtimestamp(q.start_issued_at, UTC)
    span = [(at - START_WINDOW).isoformat(), (at + START_WINDOW).isoformat()]
    query = (f"WorkflowId = {json.dumps(q.workflow_id)} AND StartTime >= {json.dumps(span[0])} "
             f"AND StartTime <= {json.dumps(span[1])}")
    try:
        runs = [wf async for wf in client.list_workflows(query)]
    except RPCError as e:
        if e.status == RPCStatusCode.UNIMPLEMENTED:  # the time-skipping test server lists nothing
            activity.logger.warning("this Temporal server cannot list runs: start proofs are not checked for reuse")
            return None
        raise
    for wf in runs:
        if wf.run_id == q.run_id:
            continue
        async for ev in client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history_events():
            header = ev.workflow_execution_started_event_attributes.header.fields.get(HEADER)
            try:
                mac = json.loads(header.data).get("mac") if header is not None else None
            except ValueError:
                mac = None
            if mac == q.start_proof:
                return wf.run_id
            break  # only the first event holds the start's proof
    return None


class EnvironmentActivities:
    def __init__(self, config: CodeBlueConfig) -> None:
        self.config = config

    @activity.defn
    async def worker_config(self, query: EnvironmentQuery) -> CodeBlueConfig:
        """The result is kept in history: no credential travels (CodeBlueConfig.for_history).
        With the incident's service, the config of that catalog service (domain.catalog)."""
        if query.start_proof and query.workflow_id and query.start_issued_at is not None:
            used_by = await start_proof_used_by(activity.client(), query)
            if used_by:
                raise ApplicationError(f"its proof was already used by run {used_by} of {query.workflow_id} "
                                       "(a replayed start)", type="StartRefused", non_retryable=True)
        cfg = for_service(self.config, query.service) if query.service else self.config
        return cfg.for_history()
