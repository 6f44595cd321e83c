"""`db-connections`: the gateway's database connection pools are exhausted; the instance is fine.

The gateway's pods (current template) log `ERROR connection pool exhausted` and fail /health;
the RDS instance `healthcare-prod` (AWS emulator, moto_server over HTTP) is available and the
database Secret names the local PostgreSQL, so the database is reachable. A rollout restart
gives fresh pods with fresh pools.
"""

from __future__ import annotations

import asyncio
import os

from domain.config import CodeBlueConfig
from sandbox.aws import AwsEmulator
from sandbox.aws_rds_seed import seed_rds
from sandbox.scenario_kit import GATEWAY, NAMESPACE, SandboxEnvironment, Scenario


async def seed_db_connections(env: SandboxEnvironment) -> None:
    # a drill must never reach real AWS: dummy credentials for the emulator only
    os.environ["AWS_ACCESS_KEY_ID"] = "sandbox"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "sandbox"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    await env.cluster.seed_healthcare_prod(namespace=NAMESPACE, gateway=GATEWAY, replicas=3)
    env.cluster.exhaust_connection_pool(NAMESPACE, GATEWAY)
    await env.cluster.reconcile()
    await asyncio.to_thread(seed_rds, env.extras["aws"])


def configure_db_connections(cfg: CodeBlueConfig, env: SandboxEnvironment) -> CodeBlueConfig:
    aws: AwsEmulator = env.extras["aws"]
    return cfg.model_copy(update={"aws": cfg.aws.model_copy(update={"endpoint_url": aws.endpoint_url, "region": aws.region})})


SCENARIO = Scenario(
    name="db-connections",
    description=(
        "api-gateway's database connection pools are exhausted (/health failing, "
        "'connection pool exhausted' in its logs) while healthcare-prod is available; restart the gateway"
    ),
    title="api-gateway database connection pool exhausted",
    severity="P1",
    driver="db-connections",
    seed=seed_db_connections,
    extras={"aws": AwsEmulator},
    configure=configure_db_connections,
)
