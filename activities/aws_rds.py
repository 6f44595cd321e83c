"""RDS activities for database recovery: preflight, an idempotent restore, a heartbeating wait.

boto3 is synchronous: each call runs in a worker thread. Errors (`ApplicationError.type`):
  PreflightFailed   the source, snapshot or engine is not what a restore needs; non-retryable.
  TargetNotOurs     the target identifier exists and is not tagged with this incident; non-retryable.
  RestoreFailed     the restored instance went to a state it will not leave (failed, ...); non-retryable.
  RestoreInProgress the wait window passed and the instance is not available yet; retryable
                    (the workflow's retry policy keeps polling).
  NotFound          the instance asked for does not exist; non-retryable.
  AwsDenied         credentials or permissions; non-retryable.
  AwsUnavailable    throttling, 5xx, network: retryable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deferred import deferred
from activities.heartbeat import DEFAULT_INTERVAL_SECONDS, Heartbeater, resume_details
from domain.database_restore import (
    INCIDENT_TAG,
    LATEST,
    RdsDeleteRequest,
    RdsInstanceInfo,
    RdsPreflightRequest,
    RdsPreflightResult,
    RdsRestoreRequest,
    RdsRestoreResult,
    RdsWaitRequest,
)

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; botocore's errors load only where an activity uses them.
if TYPE_CHECKING:
    import botocore.exceptions as boto_errors
else:
    boto_errors = deferred("botocore.exceptions")

T = TypeVar("T")

# states a restoring instance does not come back from by waiting
TERMINAL_STATES = {
    "failed", "incompatible-restore", "incompatible-parameters", "incompatible-network",
    "storage-full", "deleting", "deleted", "inaccessible-encryption-credentials",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidClientTokenId",
           "UnrecognizedClientException", "ExpiredToken", "AuthFailure", "SignatureDoesNotMatch"}
_MIN_POLL_SECONDS = 0.05


def _code(e: boto_errors.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _message(e: boto_errors.ClientError) -> str:
    return " ".join(str(e.response.get("Error", {}).get("Message", "")).split())[:240]


def instance_info(d: dict[str, Any]) -> RdsInstanceInfo:
    """The parts of a DescribeDBInstances entry CodeBlue uses."""
    ep = d.get("Endpoint") or {}
    pending = {k: str(v) for k, v in (d.get("PendingModifiedValues") or {}).items()}
    return RdsInstanceInfo(
        identifier=d["DBInstanceIdentifier"],
        status=d.get("DBInstanceStatus", "unknown"),
        engine=d.get("Engine", "unknown"),
        engine_version=d.get("EngineVersion"),
        instance_class=d.get("DBInstanceClass"),
        endpoint_host=ep.get("Address"),
        endpoint_port=ep.get("Port"),
        subnet_group=(d.get("DBSubnetGroup") or {}).get("DBSubnetGroupName"),
        security_groups=[g["VpcSecurityGroupId"] for g in d.get("VpcSecurityGroups") or [] if g.get("VpcSecurityGroupId")],
        parameter_group=next((g["DBParameterGroupName"] for g in d.get("DBParameterGroups") or []), None),
        tags={t["Key"]: t["Value"] for t in d.get("TagList") or []},
        pending_modifications=pending,
    )


def aws_error(e: boto_errors.ClientError, action: str) -> ApplicationError:
    """Map an AWS error to an ApplicationError with a one-line message."""
    code = _code(e)
    if code in _DENIED:
        return ApplicationError(f"AWS denied {action}: {code}", type="AwsDenied", non_retryable=True)
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if 400 <= status < 500 and code not in ("Throttling", "ThrottlingException", "RequestLimitExceeded"):
        return ApplicationError(f"cannot {action}: {code}: {_message(e)}", type="InvalidRequest", non_retryable=True)
    return ApplicationError(f"cannot {action}: {code or status}", type="AwsUnavailable")


def _unreachable(e: BaseException, action: str) -> ApplicationError:
    return ApplicationError(f"cannot {action}: AWS unreachable ({type(e).__name__})", type="AwsUnavailable")


class RdsActivities:
    """Activities on one AWS account/region through the boto3 RDS client given."""

    def __init__(self, rds: Any, *, heartbeat_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self._rds = rds
        self.heartbeat_seconds = heartbeat_seconds

    async def _call(self, action: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except boto_errors.ClientError as e:
            raise aws_error(e, action) from None
        except (boto_errors.BotoCoreError, OSError) as e:
            raise _unreachable(e, action) from None

    async def _instance(self, identifier: str) -> RdsInstanceInfo | None:
        action = f"describe DB instance {identifier}"
        try:
            out = await asyncio.to_thread(self._rds.describe_db_instances, DBInstanceIdentifier=identifier)
        except boto_errors.ClientError as e:
            if _code(e) == "DBInstanceNotFound":
                return None
            raise aws_error(e, action) from None
        except (boto_errors.BotoCoreError, OSError) as e:
            raise _unreachable(e, action) from None
        d = out["DBInstances"][0]
        info = instance_info(d)
        if not info.tags and d.get("DBInstanceArn"):
            tags = await self._call(f"list tags of {identifier}", self._rds.list_tags_for_resource,
                                    ResourceName=d["DBInstanceArn"])
            info.tags = {t["Key"]: t["Value"] for t in tags.get("TagList") or []}
        return info

    async def _snapshot(self, source: str, snapshot: str) -> dict[str, Any]:
        if snapshot == LATEST:
            out = await self._call(f"list snapshots of {source}", self._rds.describe_db_snapshots,
                                   DBInstanceIdentifier=source)
            ready = [s for s in out.get("DBSnapshots") or [] if s.get("Status") == "available"]
            if not ready:
                raise ApplicationError(f"no available snapshot of {source} to restore from",
                                       type="PreflightFailed", non_retryable=True)
            return max(ready, key=lambda s: s.get("SnapshotCreateTime") or 0)
        try:
            out = await asyncio.to_thread(self._rds.describe_db_snapshots, DBSnapshotIdentifier=snapshot)
        except boto_errors.ClientError as e:
            if _code(e) == "DBSnapshotNotFound":
                raise ApplicationError(f"snapshot {snapshot} does not exist", type="PreflightFailed",
                                       non_retryable=True) from None
            raise aws_error(e, f"describe snapshot {snapshot}") from None
        except (boto_errors.BotoCoreError, OSError) as e:
            raise _unreachable(e, f"describe snapshot {snapshot}") from None
        snaps = out.get("DBSnapshots") or []
        if not snaps:
            raise ApplicationError(f"snapshot {snapshot} does not exist", type="PreflightFailed", non_retryable=True)
        return snaps[0]

    # ------------------------------------------------------------------ activities

    @activity.defn
    async def rds_preflight(self, req: RdsPreflightRequest) -> RdsPreflightResult:
        """Read-only: the source and snapshot exist, the snapshot is available, engines match."""
        source = await self._instance(req.source)
        if source is None:
            raise ApplicationError(f"source DB instance {req.source} does not exist", type="PreflightFailed",
                                   non_retryable=True)
        snap = await self._snapshot(req.source, req.snapshot)
        sid = snap["DBSnapshotIdentifier"]
        status = snap.get("Status", "unknown")
        if status != "available":
            raise ApplicationError(f"snapshot {sid} is {status}, not available", type="PreflightFailed",
                                   non_retryable=True)
        engine = snap.get("Engine", "unknown")
        if engine != source.engine:
            raise ApplicationError(
                f"snapshot {sid} is {engine} but source {req.source} is {source.engine}",
                type="PreflightFailed", non_retryable=True,
            )
        target = await self._instance(req.target)
        created: Any = snap.get("SnapshotCreateTime")  # a datetime from boto3; anything else is shown as text
        return RdsPreflightResult(
            source=source,
            snapshot_id=sid,
            snapshot_status=status,
            snapshot_engine=engine,
            snapshot_created=created.isoformat() if hasattr(created, "isoformat") else (str(created) if created else None),
            target_exists=target is not None,
            target_incident=target.incident if target else None,
        )

    @activity.defn
    async def rds_restore(self, req: RdsRestoreRequest) -> RdsRestoreResult:
        """Restore the snapshot to the target with the source's class, network, parameters and
        tags (plus codeblue:incident). A target from an earlier attempt of this incident is adopted."""
        existing = await self._instance(req.target)
        if existing is not None:
            return self._adopt(req, existing)
        source = await self._instance(req.source)
        if source is None:
            raise ApplicationError(f"source DB instance {req.source} does not exist", type="PreflightFailed",
                                   non_retryable=True)
        tags = {k: v for k, v in source.tags.items() if not k.startswith("aws:")}
        tags[INCIDENT_TAG] = req.incident_id
        kwargs: dict[str, Any] = {
            "DBInstanceIdentifier": req.target,
            "DBSnapshotIdentifier": req.snapshot_id,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        if source.instance_class:
            kwargs["DBInstanceClass"] = source.instance_class
        if source.subnet_group:
            kwargs["DBSubnetGroupName"] = source.subnet_group
        if source.security_groups:
            kwargs["VpcSecurityGroupIds"] = source.security_groups
        if source.parameter_group:
            kwargs["DBParameterGroupName"] = source.parameter_group
        try:
            out = await asyncio.to_thread(self._rds.restore_db_instance_from_db_snapshot, **kwargs)
        except boto_errors.ClientError as e:
            if _code(e) == "DBInstanceAlreadyExists":  # a concurrent attempt won the race
                found = await self._instance(req.target)
                if found is not None:
                    return self._adopt(req, found)
            raise aws_error(e, f"restore {req.snapshot_id} to {req.target}") from None
        except (boto_errors.BotoCoreError, OSError) as e:
            raise _unreachable(e, f"restore {req.snapshot_id} to {req.target}") from None
        info = instance_info(out["DBInstance"])
        info.tags = info.tags or tags
        return RdsRestoreResult(instance=info, adopted=False)

    @staticmethod
    def _adopt(req: RdsRestoreRequest, existing: RdsInstanceInfo) -> RdsRestoreResult:
        if existing.incident != req.incident_id:
            owner = f"tagged for incident {existing.incident}" if existing.incident else "not created by CodeBlue"
            raise ApplicationError(
                f"DB instance {req.target} already exists and is {owner}; choose another target",
                type="TargetNotOurs", non_retryable=True,
            )
        return RdsRestoreResult(instance=existing, adopted=True)

    @activity.defn
    async def rds_wait_available(self, req: RdsWaitRequest) -> RdsInstanceInfo:
        """Poll the instance until it is available (returned), goes to a terminal state
        (RestoreFailed) or the window passes (RestoreInProgress, retryable). Heartbeats on a
        timer, not per poll: polls can be minutes apart, a describe can hang on AWS."""
        deadline = time.monotonic() + req.window_seconds
        poll = max(req.poll_seconds, _MIN_POLL_SECONDS)
        # until the first describe, report the last attempt's status (`rds_progress` shows it)
        async with Heartbeater(self.heartbeat_seconds, resume_details()) as hb:
            while True:
                info = await self._instance(req.target)
                if info is None:
                    raise ApplicationError(f"DB instance {req.target} does not exist", type="NotFound",
                                           non_retryable=True)
                hb.update({"status": info.status})
                hb.beat()
                if info.status == "available":
                    return info
                if info.status in TERMINAL_STATES:
                    raise ApplicationError(f"DB instance {req.target} is {info.status}", type="RestoreFailed",
                                           non_retryable=True)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ApplicationError(f"DB instance {req.target} is still {info.status}", {"status": info.status},
                                           type="RestoreInProgress")
                await asyncio.sleep(min(poll, remaining))

    @activity.defn
    async def rds_instance_status(self, req: RdsWaitRequest) -> RdsInstanceInfo:
        """One describe (status, pending modifications, endpoint); NotFound if it is not there."""
        info = await self._instance(req.target)
        if info is None:
            raise ApplicationError(f"DB instance {req.target} does not exist", type="NotFound", non_retryable=True)
        return info

    @activity.defn
    async def rds_delete_restored(self, req: RdsDeleteRequest) -> bool:
        """Delete the restored instance, only if it carries this incident's tag; gone already: False."""
        info = await self._instance(req.target)
        if info is None or info.status in ("deleting", "deleted"):
            return False
        if info.incident != req.incident_id:
            raise ApplicationError(f"refusing to delete {req.target}: not tagged for incident {req.incident_id}",
                                   type="TargetNotOurs", non_retryable=True)
        await self._call(f"delete DB instance {req.target}", self._rds.delete_db_instance,
                         DBInstanceIdentifier=req.target, SkipFinalSnapshot=True)
        return True
