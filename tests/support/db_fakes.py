"""A scripted RDS + database secret for DatabaseRestoreWorkflow tests on the time-skipping server.

The real RDS emulator makes restores available at once; these fakes take `restore_minutes`
of the server's clock, so the workflow's wait and limit can be skipped through.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.cluster import DbCheckRequest, DbCheckResult
from domain.database_restore import (
    INCIDENT_TAG,
    RdsDeleteRequest,
    RdsInstanceInfo,
    RdsPreflightRequest,
    RdsPreflightResult,
    RdsRestoreRequest,
    RdsRestoreResult,
    RdsWaitRequest,
    RestoredDbVerifyRequest,
    RestoredDbVerifyResult,
    SecretBackupRef,
    SecretBackupRequest,
    SecretChange,
    SecretPointRequest,
    SecretRestoreRequest,
)
from sandbox.memory_world import World

OLD_URL = "postgresql://app:Old-Pw-9f3a@healthcare-prod.abc.us-east-1.rds.amazonaws.com:5432/healthcare"


@dataclass
class DbWorld:
    base: World = field(default_factory=World)
    restore_minutes: float = 25
    secret: str = OLD_URL
    backup: str | None = None
    instances: dict[str, RdsInstanceInfo] = field(default_factory=dict)
    first_wait: datetime | None = None
    preflight_error: str | None = None
    # post-cutover db_check fails while the secret names the restored instance
    check_fails_on_restored: bool = False
    # the restore call creates the instance, then its attempt fails (a lost response) this often
    restore_lost_responses: int = 0
    calls: Counter = field(default_factory=Counter)
    verify_requests: list = field(default_factory=list)  # what db_verify_restored was asked to connect to

    @property
    def handles(self) -> list:
        return self.base.handles

    def activities(self) -> list:
        w = self
        base = [a for a in self.base.activities() if a.__name__ != "db_check"]

        @activity.defn(name="rds_preflight")
        async def rds_preflight(r: RdsPreflightRequest) -> RdsPreflightResult:
            w.calls["rds_preflight"] += 1
            if w.preflight_error:
                raise ApplicationError(w.preflight_error, type="PreflightFailed", non_retryable=True)
            t = w.instances.get(r.target)
            src = RdsInstanceInfo(identifier=r.source, status="failed", engine="postgres", instance_class="db.r6g.large")
            return RdsPreflightResult(source=src, snapshot_id="snap-1", snapshot_status="available", snapshot_engine="postgres",
                                      target_exists=t is not None, target_incident=t.incident if t else None)

        @activity.defn(name="rds_restore")
        async def rds_restore(r: RdsRestoreRequest) -> RdsRestoreResult:
            w.calls["rds_restore"] += 1
            if r.target in w.instances:
                return RdsRestoreResult(instance=w.instances[r.target], adopted=True)
            inst = RdsInstanceInfo(identifier=r.target, status="creating", engine="postgres",
                                   tags={INCIDENT_TAG: r.incident_id})
            w.instances[r.target] = inst
            if w.restore_lost_responses > 0:
                w.restore_lost_responses -= 1
                raise ApplicationError("connection reset after RestoreDBInstanceFromDBSnapshot (scripted)", type="AwsUnavailable")
            return RdsRestoreResult(instance=inst)

        @activity.defn(name="rds_wait_available")
        async def rds_wait_available(r: RdsWaitRequest) -> RdsInstanceInfo:
            w.calls["rds_wait_available"] += 1
            now = activity.info().current_attempt_scheduled_time
            w.first_wait = w.first_wait or now
            inst = w.instances[r.target]
            if now - w.first_wait >= timedelta(minutes=w.restore_minutes):
                inst.status, inst.endpoint_host, inst.endpoint_port = "available", f"{r.target}.rds.example", 5432
                return inst
            activity.heartbeat({"status": "creating"})
            raise ApplicationError(f"DB instance {r.target} is still creating", type="RestoreInProgress")

        @activity.defn(name="db_verify_restored")
        async def db_verify_restored(r: RestoredDbVerifyRequest) -> RestoredDbVerifyResult:
            w.calls["db_verify_restored"] += 1
            w.verify_requests.append(r)
            return RestoredDbVerifyResult(ok=True, where=f"{r.host}:{r.port}/healthcare", select_one=True, sanity="42",
                                          detail=f"connected to {r.host}:{r.port}/healthcare; SELECT 1 ok; sanity query returned 42")

        @activity.defn(name="db_secret_backup")
        async def db_secret_backup(r: SecretBackupRequest) -> SecretBackupRef:
            w.calls["db_secret_backup"] += 1
            created = w.backup is None
            w.backup = w.backup or w.secret
            return SecretBackupRef(namespace=r.namespace, secret_name=r.secret_name, secret_key=r.secret_key,
                                   backup_name="backup", source_resource_version="7", created=created)

        @activity.defn(name="db_secret_point")
        async def db_secret_point(r: SecretPointRequest) -> SecretChange:
            w.calls["db_secret_point"] += 1
            assert w.backup
            w.secret = w.backup.replace("healthcare-prod.abc.us-east-1.rds.amazonaws.com:5432", f"{r.host}:{r.port}")
            return SecretChange(secret_name=r.backup.secret_name, changed=True, where=f"{r.host}:{r.port}/healthcare")

        @activity.defn(name="db_secret_restore")
        async def db_secret_restore(r: SecretRestoreRequest) -> SecretChange:
            w.calls["db_secret_restore"] += 1
            assert w.backup
            w.secret = w.backup
            return SecretChange(secret_name=r.backup.secret_name, changed=True, where="old")

        @activity.defn(name="rds_delete_restored")
        async def rds_delete_restored(r: RdsDeleteRequest) -> bool:
            w.calls["rds_delete_restored"] += 1
            return w.instances.pop(r.target, None) is not None

        @activity.defn(name="db_check")
        async def db_check(r: DbCheckRequest) -> DbCheckResult:
            w.calls["db_check"] += 1
            bad = w.check_fails_on_restored and w.secret != OLD_URL
            return DbCheckResult(ok=not bad, detail="connection refused (scripted)" if bad else "connected; SELECT 1 ok")

        return base + [rds_preflight, rds_restore, rds_wait_available, db_verify_restored, db_secret_backup,
                       db_secret_point, db_secret_restore, rds_delete_restored, db_check]
