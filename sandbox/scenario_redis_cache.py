"""`cache-poisoned`: the gateway serves stale provider data from Redis. ElastiCache cluster
`healthcare-prod-redis` (moto_server) whose endpoint resolves to a dedicated redis-server
holding 40 poisoned `provider:*` keys and 25 `session:*` keys; evictions and misses are high."""

from __future__ import annotations

import asyncio
import os

import boto3
import redis.asyncio as aioredis

from domain.config import AwsConfig, CacheConfig, CodeBlueConfig
from sandbox.aws import AwsEmulator
from sandbox.redis_server import RedisServer
from sandbox.scenario_kit import SandboxEnvironment, Scenario, seed_bad_release

CLUSTER = "healthcare-prod-redis"
POISONED = "provider:*"
PROVIDER_KEYS = 40
SESSION_KEYS = 25


async def seed_cache(env: SandboxEnvironment) -> None:
    await seed_bad_release(env, current_tag="v1.4.2")  # the cluster is fine; the cache is not
    aws: AwsEmulator = env.extras["aws"]
    # a drill must never reach real AWS: dummy credentials for the emulator only
    os.environ["AWS_ACCESS_KEY_ID"] = "sandbox"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "sandbox"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    ec = boto3.client("elasticache", **aws.client_kwargs())
    await asyncio.to_thread(
        ec.create_cache_cluster, CacheClusterId=CLUSTER, Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1
    )
    rs: RedisServer = env.extras["redis"]
    r = aioredis.Redis(host="127.0.0.1", port=rs.port)
    try:
        for i in range(PROVIDER_KEYS):
            await r.set(f"provider:{i}", "stale")
        for i in range(SESSION_KEYS):
            await r.set(f"session:{i}", "live")
        for i in range(30):
            await r.get(f"missing:{i}")  # misses: a poor hit ratio
    finally:
        await r.aclose()


def configure_cache(cfg: CodeBlueConfig, env: SandboxEnvironment) -> CodeBlueConfig:
    aws: AwsEmulator = env.extras["aws"]
    rs: RedisServer = env.extras["redis"]
    return cfg.model_copy(update={
        "aws": AwsConfig(region=aws.region, endpoint_url=aws.endpoint_url, elasticache_cluster=CLUSTER),
        "cache": CacheConfig(endpoint_override=rs.address),
    })


def aws_emulator() -> AwsEmulator:
    return AwsEmulator()


SCENARIO = Scenario(
    name="cache-poisoned",
    description=(
        f"{CLUSTER} serves stale provider data: {PROVIDER_KEYS} poisoned {POISONED} keys next to "
        f"{SESSION_KEYS} live sessions; the IC flushes only the pattern and rejects FLUSHALL"
    ),
    title="patients see stale provider directory (Redis cache)",
    severity="P2",
    driver="cache-poisoned",
    seed=seed_cache,
    extras={"aws": aws_emulator, "redis": RedisServer},
    configure=configure_cache,
)
