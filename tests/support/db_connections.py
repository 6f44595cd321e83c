"""A scripted database-connection incident for DatabaseConnectionPlaybook tests (time skipping).

Builds on `DbWorld` (its RDS and secret fakes serve the restore child) and adds the RDS
instance status and a gateway whose connection pool is exhausted until a rollout restart.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.cluster import HealthProbeRequest, HealthProbeResult, LogsQuery, LogsReport, RestartRequest, RolloutState
from domain.database_restore import RdsInstanceInfo, RdsWaitRequest
from domain.db_connections import DbConnectionsInput
from sandbox.memory_world import configure_worker
from tests.support.db_fakes import DbWorld
from tests.support.restore import IC, restore_config
from tests.support.workflows import terminate
from workflows.database_restore import DatabaseRestoreWorkflow
from workflows.db_connections import DatabaseConnectionPlaybook

# a raw log line carries patient data: it must never reach the workflow history
PATIENT_LINE = "ERROR connection pool exhausted while loading patient MRN-0042 Jane Roe"


@dataclass
class ConnWorld:
    db: DbWorld = field(default_factory=DbWorld)
    rds_status: str | None = "available"  # None: the instance does not exist
    pool_exhausted: bool = True
    restart_fixes: bool = True

    @property
    def handles(self) -> list:
        return self.db.handles

    def activities(self) -> list:
        w = self
        mine = {"gateway_logs", "rollout_restart", "probe_health"}
        base = [a for a in self.db.activities() if a.__name__ not in mine]

        @activity.defn(name="rds_instance_status")
        async def rds_instance_status(r: RdsWaitRequest) -> RdsInstanceInfo:
            w.db.calls["rds_instance_status"] += 1
            if w.rds_status is None:
                raise ApplicationError(f"DB instance {r.target} does not exist", type="NotFound", non_retryable=True)
            return RdsInstanceInfo(identifier=r.target, status=w.rds_status, engine="postgres",
                                   endpoint_host=f"{r.target}.rds.example", endpoint_port=5432,
                                   pending_modifications={"DBInstanceClass": "db.r6g.xlarge"})

        @activity.defn(name="gateway_logs")
        async def gateway_logs(q: LogsQuery) -> LogsReport:
            w.db.calls["gateway_logs"] += 1
            lines = [PATIENT_LINE] * 30 if w.pool_exhausted else ["INFO GET /health 200"] * 30
            counts = {k: sum(sub in ln.lower() for ln in lines) for k, sub in q.patterns.items()}
            return LogsReport(deployment=q.deployment, pods_read=3, lines_scanned=len(lines), error_counts=counts)

        @activity.defn(name="rollout_restart")
        async def rollout_restart(r: RestartRequest) -> RolloutState:
            w.db.calls["rollout_restart"] += 1
            w.db.base.effects.append(f"restart {r.deployment}")
            if w.restart_fixes:
                w.pool_exhausted = False
            return RolloutState(deployment=r.deployment, complete=False, desired=3, updated=0, available=0)

        @activity.defn(name="probe_health")
        async def probe_health(r: HealthProbeRequest) -> HealthProbeResult:
            ok = not w.pool_exhausted
            return HealthProbeResult(url=r.url, ok=ok, successes=r.attempts if ok else 0, attempts=r.attempts,
                                     last_status=200 if ok else 503)

        return base + [rds_instance_status, gateway_logs, rollout_restart, probe_health]


def conn_input(**kw) -> DbConnectionsInput:
    iid = kw.pop("incident_id", f"INC-{uuid.uuid4().hex[:8]}")
    configure_worker(iid, kw.pop("config", restore_config()))  # the (fake) worker's config, never the input's
    return DbConnectionsInput(incident_id=iid, requested_by="oncall", commander=IC, **kw)


@asynccontextmanager
async def conn_worker(env: WorkflowEnvironment, world: ConnWorld) -> AsyncIterator[str]:
    """The playbook and its restore child on one task queue; what is left running is terminated."""
    tq = f"tq-dbc-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=tq, workflows=[DatabaseConnectionPlaybook, DatabaseRestoreWorkflow],
                      activities=world.activities()):
        try:
            yield tq
        finally:
            for h in world.handles:
                await terminate(h)
