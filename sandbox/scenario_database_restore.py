"""`db-outage`: the production database instance is down; restore it from the latest snapshot,
verify, cut the gateway over, verify again.

The AWS emulator (moto_server over HTTP) holds `healthcare-prod` (stopped: the outage) and its
snapshot; the database Secret points at a port nothing listens on; the restored endpoint
resolves (restore.endpoint_override) to the local PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os

from domain.config import CodeBlueConfig
from sandbox.aws import AwsEmulator
from sandbox.aws_rds_seed import rds_client, seed_rds
from sandbox.scenario_kit import GATEWAY, NAMESPACE, SandboxEnvironment, Scenario
from starters.ports import free_port

LOCAL_DB = "127.0.0.1:5432"
DB_SECRET, DB_KEY = "healthcare-db-secret", "DATABASE_URL"


def old_database_url() -> str:
    """The URL of the failed instance (nothing listens there); the password is the sandbox's own."""
    return f"postgresql://postgres:sandbox-db-pw@127.0.0.1:{free_port()}/postgres?application_name={GATEWAY}"


async def seed_db_outage(env: SandboxEnvironment) -> None:
    # a drill must never reach real AWS: dummy credentials for the emulator only
    os.environ["AWS_ACCESS_KEY_ID"] = "sandbox"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "sandbox"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    await env.cluster.seed_healthcare_prod(namespace=NAMESPACE, gateway=GATEWAY, replicas=3, database_url=old_database_url())
    aws: AwsEmulator = env.extras["aws"]
    seeded = await asyncio.to_thread(seed_rds, aws)
    await asyncio.to_thread(rds_client(aws).stop_db_instance, DBInstanceIdentifier=seeded.source)


def configure_db_outage(cfg: CodeBlueConfig, env: SandboxEnvironment) -> CodeBlueConfig:
    aws: AwsEmulator = env.extras["aws"]
    return cfg.model_copy(update={
        "aws": cfg.aws.model_copy(update={"endpoint_url": aws.endpoint_url, "region": aws.region}),
        "restore": cfg.restore.model_copy(update={
            "endpoint_override": LOCAL_DB, "poll_interval_seconds": 0.5, "poll_window_seconds": 10,
        }),
    })


SCENARIO = Scenario(
    name="db-outage",
    description=(
        "the healthcare-prod RDS instance is down and api-gateway cannot reach its database; "
        "restore healthcare-prod-snapshot-latest, verify, cut over"
    ),
    title="healthcare-prod database down; restore from snapshot",
    severity="P0",
    driver="db-restore",
    seed=seed_db_outage,
    extras={"aws": AwsEmulator},
    configure=configure_db_outage,
)
