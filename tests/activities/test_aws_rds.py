"""RdsActivities against moto_server over HTTP (sandbox.aws.AwsEmulator)."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.exceptions import ApplicationError

from activities.aws_rds import RdsActivities
from domain.database_restore import INCIDENT_TAG, RdsPreflightRequest, RdsRestoreRequest, RdsWaitRequest
from sandbox.aws import AwsEmulator
from sandbox.aws_rds_seed import rds_client, seed_rds

TARGET = "healthcare-prod-restored"


@pytest.fixture
def aws(empty_aws: AwsEmulator) -> AwsEmulator:
    seed_rds(empty_aws)
    return empty_aws


def _targets(rds) -> list[str]:
    return [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"] if d["DBInstanceIdentifier"] == TARGET]


def pre(snapshot: str = "healthcare-prod-snapshot-latest", source: str = "healthcare-prod") -> RdsPreflightRequest:
    return RdsPreflightRequest(incident_id="INC-1", source=source, snapshot=snapshot, target=TARGET)


async def test_preflight_passes_and_resolves_latest_to_the_newest_available_snapshot(aws):
    rds = rds_client(aws)
    acts = RdsActivities(rds)
    ok = await acts.rds_preflight(pre())
    assert (ok.snapshot_id, ok.snapshot_status, ok.source.engine, ok.target_exists) == (
        "healthcare-prod-snapshot-latest", "available", "postgres", False)
    await asyncio.sleep(0.01)
    rds.create_db_snapshot(DBInstanceIdentifier="healthcare-prod", DBSnapshotIdentifier="healthcare-prod-newer")
    assert (await acts.rds_preflight(pre("latest"))).snapshot_id == "healthcare-prod-newer"


@pytest.mark.parametrize("case", ["no-source", "no-snapshot", "not-available", "wrong-engine"])
async def test_preflight_failures_are_clear_non_retryable_and_change_nothing(aws, case):
    rds = rds_client(aws)
    req = pre()
    if case == "no-source":
        req = pre(source="nope")
    elif case == "no-snapshot":
        req = pre("healthcare-prod-snapshot-missing")
    elif case == "not-available":
        # moto makes snapshots available at once: present this one as still being created
        def creating(parsed, **_):
            for s in parsed.get("DBSnapshots", []):
                s["Status"] = "creating"
        rds.meta.events.register("after-call.rds.DescribeDBSnapshots", creating)
    elif case == "wrong-engine":
        seed_rds(aws, source="billing-mysql", snapshot="billing-snap", engine="mysql")
        req = pre("billing-snap")
    def instances():
        return sorted((d["DBInstanceIdentifier"], d["DBInstanceStatus"]) for d in rds.describe_db_instances()["DBInstances"])
    before = instances()
    with pytest.raises(ApplicationError) as e:
        await RdsActivities(rds).rds_preflight(req)
    assert e.value.type == "PreflightFailed" and e.value.non_retryable
    expected = {"no-source": "source DB instance nope does not exist",
                "no-snapshot": "snapshot healthcare-prod-snapshot-missing does not exist",
                "not-available": "is creating, not available",
                "wrong-engine": "is mysql but source healthcare-prod is postgres"}[case]
    assert expected in e.value.message
    assert instances() == before and TARGET not in dict(before)


async def test_restore_copies_the_source_settings_and_tags_and_a_retry_adopts(aws):
    rds = rds_client(aws)
    acts = RdsActivities(rds)
    req = RdsRestoreRequest(incident_id="INC-1", source="healthcare-prod", snapshot_id="healthcare-prod-snapshot-latest", target=TARGET)
    first = await acts.rds_restore(req)
    assert not first.adopted
    d = rds.describe_db_instances(DBInstanceIdentifier=TARGET)["DBInstances"][0]
    assert d["DBInstanceClass"] == "db.r6g.large"
    assert d["DBSubnetGroup"]["DBSubnetGroupName"] == "healthcare-prod-subnets"
    assert [g["DBParameterGroupName"] for g in d["DBParameterGroups"]] == ["healthcare-prod-params"]
    src = rds.describe_db_instances(DBInstanceIdentifier="healthcare-prod")["DBInstances"][0]
    assert [g["VpcSecurityGroupId"] for g in d["VpcSecurityGroups"]] == [g["VpcSecurityGroupId"] for g in src["VpcSecurityGroups"]]
    tags = {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=d["DBInstanceArn"])["TagList"]}
    assert tags == {"team": "platform", "data": "phi", INCIDENT_TAG: "INC-1"}

    again = await acts.rds_restore(req)  # the activity retried after the instance was created
    assert again.adopted and again.instance.identifier == TARGET
    assert _targets(rds) == [TARGET]
    assert (await acts.rds_preflight(pre())).target_incident == "INC-1"


async def test_restore_refuses_a_target_that_is_not_ours(aws):
    rds = rds_client(aws)
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=TARGET, DBSnapshotIdentifier="healthcare-prod-snapshot-latest")
    req = RdsRestoreRequest(incident_id="INC-2", source="healthcare-prod", snapshot_id="healthcare-prod-snapshot-latest", target=TARGET)
    with pytest.raises(ApplicationError) as e:
        await RdsActivities(rds).rds_restore(req)
    assert e.value.type == "TargetNotOurs" and e.value.non_retryable and "not created by CodeBlue" in e.value.message


async def test_wait_returns_the_available_instance_with_its_endpoint(aws):
    rds = rds_client(aws)
    acts = RdsActivities(rds)
    await acts.rds_restore(RdsRestoreRequest(incident_id="INC-1", source="healthcare-prod",
                                             snapshot_id="healthcare-prod-snapshot-latest", target=TARGET))
    info = await acts.rds_wait_available(RdsWaitRequest(target=TARGET, poll_seconds=0.05, window_seconds=5))
    assert info.status == "available" and info.endpoint_host and info.endpoint_port == 5432
    with pytest.raises(ApplicationError) as e:
        await acts.rds_wait_available(RdsWaitRequest(target="nope", poll_seconds=0.05, window_seconds=1))
    assert e.value.type == "NotFound"


async def test_wait_past_its_window_fails_retryably_with_the_status(aws):
    rds = rds_client(aws)
    await RdsActivities(rds).rds_restore(RdsRestoreRequest(incident_id="INC-1", source="healthcare-prod",
                                                           snapshot_id="healthcare-prod-snapshot-latest", target=TARGET))

    def restoring(parsed, **_):
        for d in parsed.get("DBInstances", []):
            d["DBInstanceStatus"] = "creating"
    rds.meta.events.register("after-call.rds.DescribeDBInstances", restoring)
    with pytest.raises(ApplicationError) as e:
        await RdsActivities(rds).rds_wait_available(RdsWaitRequest(target=TARGET, poll_seconds=0.05, window_seconds=0.2))
    assert e.value.type == "RestoreInProgress" and not e.value.non_retryable and "still creating" in e.value.message
