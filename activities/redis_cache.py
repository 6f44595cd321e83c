"""The runbook's Redis cache steps: describe the ElastiCache cluster, PING/INFO its Redis,
flush it (all, or a key pattern) only at the cluster's own address.

boto3 talks to `aws.endpoint_url` when set (the sandbox's moto_server); Redis through
redis-py's asyncio client. The AUTH token comes from the environment variable
`cache.password_env`, never from workflow history.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deferred import deferred
from activities.heartbeat import DEFAULT_INTERVAL_SECONDS, Heartbeater, resume_details
from domain.config import AwsConfig, CacheConfig
from domain.redis_cache import (
    CacheCluster,
    CacheClusterQuery,
    CacheNode,
    FlushRequest,
    FlushResult,
    RedisStats,
    RedisTarget,
)

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; boto3 (and botocore's errors) and redis load only where an activity uses them.
if TYPE_CHECKING:
    import boto3
    import botocore.exceptions as boto_errors
    import redis.asyncio
    import redis.exceptions
else:
    boto3 = deferred("boto3")
    boto_errors = deferred("botocore.exceptions")
    redis = deferred("redis")  # binds redis.asyncio and redis.exceptions when it loads

UNLINK_BATCH = 500


def _endpoint(ep: dict[str, Any] | None) -> str | None:
    if not ep or not ep.get("Address"):
        return None
    return f"{ep['Address']}:{ep.get('Port', 6379)}"


class CacheActivities:
    def __init__(self, aws: AwsConfig, cache: CacheConfig, *,
                 heartbeat_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.aws = aws
        self.cache = cache
        self.heartbeat_seconds = heartbeat_seconds

    # ---------------------------------------------------------------- ElastiCache

    def _elasticache(self) -> Any:
        kw: dict[str, Any] = {"region_name": self.aws.region}
        if self.aws.endpoint_url:
            kw["endpoint_url"] = self.aws.endpoint_url
        return boto3.client("elasticache", **kw)

    @activity.defn
    async def describe_cache_cluster(self, q: CacheClusterQuery) -> CacheCluster:
        def call() -> dict[str, Any]:
            return self._elasticache().describe_cache_clusters(CacheClusterId=q.cluster_id, ShowCacheNodeInfo=True)

        try:
            resp = await asyncio.to_thread(call)
        except boto_errors.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            msg = e.response.get("Error", {}).get("Message", str(e))
            if code in ("CacheClusterNotFound", "CacheClusterNotFoundFault"):
                raise ApplicationError(f"ElastiCache cluster {q.cluster_id} not found", type="NotFound", non_retryable=True) from None
            if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
                raise ApplicationError(f"forbidden to describe {q.cluster_id}: {msg}", type="Forbidden", non_retryable=True) from None
            raise ApplicationError(f"describe_cache_clusters {q.cluster_id}: {code} {msg}", type="AwsError") from None
        except (boto_errors.NoCredentialsError, boto_errors.NoRegionError) as e:
            raise ApplicationError(f"AWS credentials/region missing: {e}", type="BadConfig", non_retryable=True) from None
        except boto_errors.BotoCoreError as e:
            raise ApplicationError(f"ElastiCache unreachable: {e}", type="AwsUnavailable") from None
        raw = (resp.get("CacheClusters") or [{}])[0]
        nodes = [
            CacheNode(node_id=n.get("CacheNodeId", "?"), status=n.get("CacheNodeStatus", "?"), endpoint=_endpoint(n.get("Endpoint")))
            for n in raw.get("CacheNodes") or []
        ]
        endpoint = _endpoint(raw.get("ConfigurationEndpoint")) or next((n.endpoint for n in nodes if n.endpoint), None)
        return CacheCluster(
            cluster_id=raw.get("CacheClusterId", q.cluster_id),
            status=raw.get("CacheClusterStatus", "unknown"),
            engine=raw.get("Engine", "unknown"),
            engine_version=raw.get("EngineVersion"),
            nodes=nodes,
            endpoint=endpoint,
        )

    # ---------------------------------------------------------------- Redis

    def allowed_address(self, t: RedisTarget) -> str:
        """The one address CodeBlue will talk to for this cluster; anything else is refused."""
        expected = self.cache.endpoint_override or t.cluster_endpoint
        if not expected:
            raise ApplicationError(
                f"cluster {t.cluster_id} reports no endpoint and cache.endpoint_override is unset",
                type="EndpointMismatch",
                non_retryable=True,
            )
        if _norm(t.address) != _norm(expected):
            raise ApplicationError(
                f"refusing Redis at {t.address}: cluster {t.cluster_id}'s endpoint is {expected}",
                type="EndpointMismatch",
                non_retryable=True,
            )
        return expected

    def _client(self, t: RedisTarget) -> redis.asyncio.Redis:
        host, port = _split(self.allowed_address(t))
        return redis.asyncio.Redis(
            host=host,
            port=port,
            db=self.cache.db,
            password=os.environ.get(self.cache.password_env) or None,
            ssl=self.cache.tls,
            socket_timeout=self.cache.timeout_seconds,
            socket_connect_timeout=self.cache.timeout_seconds,
        )

    @staticmethod
    def _redis_error(e: Exception, t: RedisTarget) -> ApplicationError:
        if isinstance(e, redis.exceptions.AuthenticationError):
            return ApplicationError(f"Redis at {t.address}: authentication failed", type="Unauthorized", non_retryable=True)
        return ApplicationError(f"Redis at {t.address}: {type(e).__name__}: {str(e).splitlines()[0][:200]}", type="RedisUnavailable")

    @staticmethod
    async def _keys(r: redis.asyncio.Redis) -> tuple[int, dict[str, int]]:
        ks = await r.info("keyspace")
        per_db = {db: int(v.get("keys", 0)) if isinstance(v, dict) else 0 for db, v in ks.items()}
        return sum(per_db.values()), per_db

    @activity.defn
    async def redis_stats(self, t: RedisTarget) -> RedisStats:
        r = self._client(t)
        try:
            ping = bool(await r.ping())
            info = await r.info()
            _, per_db = await self._keys(r)
            dbsize = int(await r.dbsize())
        except redis.exceptions.RedisError as e:
            raise self._redis_error(e, t) from None
        finally:
            await r.aclose()
        return RedisStats(
            address=t.address,
            ping=ping,
            used_memory_human=info.get("used_memory_human"),
            used_memory_bytes=info.get("used_memory"),
            maxmemory_bytes=info.get("maxmemory") or None,
            evicted_keys=int(info.get("evicted_keys", 0)),
            connected_clients=int(info.get("connected_clients", 0)),
            keyspace_hits=int(info.get("keyspace_hits", 0)),
            keyspace_misses=int(info.get("keyspace_misses", 0)),
            keys=dbsize,
            keyspace=per_db,
        )

    @activity.defn
    async def redis_flush(self, req: FlushRequest) -> FlushResult:
        """FLUSHALL [ASYNC] (only with the cluster's name confirmed) or SCAN MATCH + UNLINK.
        Both are idempotent: repeating one removes nothing more than it already did. Heartbeats
        on a timer (a selective pattern can scan a long time between matches)."""
        t = req.target
        if req.pattern is None and (req.confirmation or "").strip() != t.cluster_id:
            raise ApplicationError(
                f"FLUSHALL refused: the cluster name was not confirmed (expected {t.cluster_id!r})",
                type="NotConfirmed",
                non_retryable=True,
            )
        r = self._client(t)
        try:
            # until this attempt has progress of its own, keep reporting the last attempt's
            async with Heartbeater(self.heartbeat_seconds, resume_details()) as hb:
                if req.pattern is None:
                    before, _ = await self._keys(r)
                    await r.flushall(asynchronous=req.use_async)
                    after, _ = await self._keys(r)
                    mode = "flushall-async" if req.use_async else "flushall"
                    return FlushResult(mode=mode, keys_before=before, keys_after=after, deleted=before - after,
                                       detail=f"FLUSHALL{' ASYNC' if req.use_async else ''}: {before} -> {after} keys")
                return await self._flush_pattern(r, req.pattern, hb)
        except redis.exceptions.RedisError as e:
            raise self._redis_error(e, t) from None
        finally:
            await r.aclose()

    async def _flush_pattern(self, r: redis.asyncio.Redis, pattern: str, hb: Heartbeater) -> FlushResult:
        """SCAN MATCH + UNLINK, page by page; the heartbeat carries a cursor before which
        every matching key is unlinked. A retry resumes there only on the same Redis process (run_id),
        db and pattern: another server (restart, failover) hashes keys into other buckets, so
        its cursor would skip keys, and the scan starts over instead (harmless: idempotent).
        Pages unlinked after the last beat the server kept are rescanned, not recounted: a
        resumed `deleted` can miss those keys, never count one twice."""
        run_id = str((await r.info("server")).get("run_id", ""))
        db = self.cache.db
        progress = resume_details()
        if not (progress and run_id and progress.get("run_id") == run_id and progress.get("db") == db
                and progress.get("pattern") == pattern and int(progress.get("cursor") or 0) > 0):
            progress = None
        if progress is not None:
            before, cursor, deleted = int(progress["keys_before"]), int(progress["cursor"]), int(progress["deleted"])
        else:
            before, cursor, deleted = int(await r.dbsize()), 0, 0

        def report() -> dict[str, Any]:
            return {"run_id": run_id, "db": db, "pattern": pattern, "cursor": cursor,
                    "deleted": deleted, "keys_before": before}

        hb.update(report())
        while True:
            cursor, keys = await r.scan(cursor=cursor, match=pattern, count=self.cache.scan_count)
            for i in range(0, len(keys), UNLINK_BATCH):
                deleted += int(await r.unlink(*keys[i:i + UNLINK_BATCH]))
            hb.update(report())
            if cursor == 0:
                break
        after = int(await r.dbsize())
        resumed = " (resumed)" if progress is not None else ""
        return FlushResult(mode="pattern", keys_before=before, keys_after=after, deleted=deleted,
                           detail=f"SCAN MATCH {pattern} + UNLINK: {deleted} removed, {before} -> {after} keys "
                                  f"in db {db}{resumed}")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host:
        return address, 6379
    return host, int(port)


def _norm(address: str) -> str:
    host, port = _split(address.strip().lower())
    return f"{'127.0.0.1' if host == 'localhost' else host}:{port}"
