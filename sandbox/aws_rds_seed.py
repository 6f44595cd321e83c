"""Seeds the AWS emulator with the runbook's database: `healthcare-prod` (postgres) in its own
subnet group, security group and parameter group, tagged, with a snapshot named as the
runbook's `healthcare-prod-snapshot-latest`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from sandbox.aws import AwsEmulator


@dataclass
class SeededRds:
    source: str
    snapshot: str
    subnet_group: str
    security_group: str
    parameter_group: str
    instance_class: str


def rds_client(aws: AwsEmulator) -> Any:
    return boto3.client("rds", **aws.client_kwargs())


def seed_rds(aws: AwsEmulator, source: str = "healthcare-prod", snapshot: str = "healthcare-prod-snapshot-latest",
             engine: str = "postgres", instance_class: str = "db.r6g.large") -> SeededRds:
    ec2 = boto3.client("ec2", **aws.client_kwargs())
    rds = rds_client(aws)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    sg = ec2.create_security_group(GroupName=f"{source}-db", Description="database", VpcId=vpc)["GroupId"]
    rds.create_db_subnet_group(DBSubnetGroupName=f"{source}-subnets", DBSubnetGroupDescription="database", SubnetIds=subnets)
    family = "postgres15" if engine == "postgres" else "mysql8.0"
    rds.create_db_parameter_group(DBParameterGroupName=f"{source}-params", DBParameterGroupFamily=family, Description="db")
    rds.create_db_instance(
        DBInstanceIdentifier=source, DBInstanceClass=instance_class, Engine=engine, MasterUsername="app",
        MasterUserPassword="sandbox-only-pw", AllocatedStorage=100, DBSubnetGroupName=f"{source}-subnets",
        VpcSecurityGroupIds=[sg], DBParameterGroupName=f"{source}-params",
        Tags=[{"Key": "team", "Value": "platform"}, {"Key": "data", "Value": "phi"}],
    )
    rds.create_db_snapshot(DBInstanceIdentifier=source, DBSnapshotIdentifier=snapshot)
    return SeededRds(source, snapshot, f"{source}-subnets", sg, f"{source}-params", instance_class)
