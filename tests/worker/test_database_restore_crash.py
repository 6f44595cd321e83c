"""A worker SIGKILLed while the restore waits: a new worker picks the wait up and finishes."""

from __future__ import annotations

import uuid

from domain.database_restore import INCIDENT_TAG, DatabaseRestoreInput
from sandbox.aws_rds_seed import rds_client
from sandbox.scenario_database_restore import DB_KEY, DB_SECRET, LOCAL_DB
from sandbox.scenarios import NAMESPACE, sandbox_environment
from sandbox.worker_process import kill9, spawn_worker, stop
from starters import database_restore
from tests.support.polling import until
from tests.support.restore import IC, approve, events, proposed
from workflows.database_restore import DatabaseRestoreWorkflow


def _waiting(desc) -> bool:
    """The wait activity has heartbeated a non-available status."""
    return any(pa.activity_type.name == "rds_wait_available" and pa.heartbeat_details.payloads
               for pa in desc.raw_description.pending_activities)


async def test_worker_killed_during_the_wait_a_new_one_completes(dev_env):
    tq = f"db-crash-{uuid.uuid4().hex[:6]}"
    async with sandbox_environment("db-outage") as sb:
        iid = f"DBCRASH-{uuid.uuid4().hex[:6]}"
        rds = rds_client(sb.extras["aws"])
        # a restore still in progress: the target exists (from this incident) and is not available
        rds.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier="healthcare-prod-restored", DBSnapshotIdentifier="healthcare-prod-snapshot-latest",
            Tags=[{"Key": INCIDENT_TAG, "Value": iid}])
        rds.stop_db_instance(DBInstanceIdentifier="healthcare-prod-restored")
        address = dev_env.client.service_client.config.target_host
        first = spawn_worker(address, sb.config_path, tq)
        second = None
        try:
            h = await database_restore.start_restore(
                dev_env.client, DatabaseRestoreInput(incident_id=iid, requested_by="test", commander=IC), tq)
            await until(h, proposed("restore"), "gate 1", timeout=60, query=DatabaseRestoreWorkflow.status)
            await approve(dev_env, h, "restore")
            await until(h.describe, _waiting, "rds_wait_available to heartbeat", timeout=60, poll=0.1, max_poll=0.1)
            kill9(first)
            second = spawn_worker(address, sb.config_path, tq)
            assert (await database_restore.rds_progress(dev_env.client, iid))["rds_status"] == "stopped"
            rds.start_db_instance(DBInstanceIdentifier="healthcare-prod-restored")
            await until(h, proposed("cutover"), "gate 2 reached by the new worker", timeout=90, query=DatabaseRestoreWorkflow.status)
            await approve(dev_env, h, "cutover")
            report = await h.result()
        finally:
            stop(first, second)
        assert report.status == "restored" and report.verified, events(report)
        restore = next(a for a in report.actions if a.id == "restore")
        assert "adopted from an earlier attempt" in (restore.result or "")
        assert f"@{LOCAL_DB}/" in (sb.cluster.secret_value(NAMESPACE, DB_SECRET, DB_KEY) or "")
        assert [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]].count("healthcare-prod-restored") == 1
