"""The Redis cache playbook: ElastiCache via moto_server, Redis via a dedicated redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.redis_cache import CacheActivities
from domain.config import AwsConfig, CacheConfig
from domain.incident import TimelineKind
from domain.redis_cache import FlushConfirmation, FlushRequest, RedisTarget
from sandbox.redis_server import RedisServer
from sandbox.scenario_redis_cache import CLUSTER, PROVIDER_KEYS, SESSION_KEYS
from starters.redis_cache import confirm_flush
from starters.service import CodeBlueError
from tests.support.polling import until
from tests.support.redis_cache import cache_world
from tests.support.workflows import entries, kinds
from worker.temporal import replayer
from workflows.redis_cache import RedisCachePlaybook

ALL = PROVIDER_KEYS + SESSION_KEYS


async def test_flushall_runs_only_with_the_cluster_name_confirmed(skipping_env):
    async with cache_world(skipping_env) as w:
        h = await w.start()
        rep = await until(h, lambda r: bool(r.actions), "proposals", timeout=30, query=RedisCachePlaybook.status)
        assert len(entries(rep, TimelineKind.STEP, actor="codeblue")) == 3  # cluster, address, stats
        before = rep.assessment["before"]
        assert before["keys"] == ALL and before["hit_ratio"] == 0.0
        await w.decide(h, "flushall", approve=True)
        await until(h, lambda r: "Waiting for FLUSHALL confirmation" in [e.event for e in r.timeline], "confirmation wait", timeout=30, query=RedisCachePlaybook.status)
        with pytest.raises(CodeBlueError, match="cluster name does not match"):
            await confirm_flush(skipping_env.client, h.id, FlushConfirmation(by="alice", cluster_name="healthcare-prod"))
        with pytest.raises(CodeBlueError, match="not the incident commander"):
            await confirm_flush(skipping_env.client, h.id, FlushConfirmation(by="mallory", cluster_name=CLUSTER))
        assert await w.count("*") == ALL  # nothing flushed yet
        await confirm_flush(skipping_env.client, h.id, FlushConfirmation(by="alice", cluster_name=CLUSTER))
        rep = await h.result()
        (act,) = rep.actions
        assert act.state.value == "executed" and rep.status == "resolved" and rep.verified
        assert rep.assessment["flushall"]["mode"] == "flushall-async"
        assert (rep.assessment["flushall"]["keys_before"], rep.assessment["flushall"]["keys_after"]) == (ALL, 0)
        assert await w.count("*") == 0
        result = await replayer([RedisCachePlaybook]).replay_workflow(
            await h.fetch_history(), raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure


async def test_flushall_without_confirmation_is_not_run(skipping_env):
    async with cache_world(skipping_env) as w:
        w.sandbox.config.mitigation.escalate_after_seconds = 120  # how long a confirmation may take
        h = await w.start()
        await until(h, lambda r: bool(r.actions), "proposals", timeout=30, query=RedisCachePlaybook.status)
        await w.decide(h, "flushall", approve=True)
        await until(h, lambda r: "Waiting for FLUSHALL confirmation" in [e.event for e in r.timeline], "confirmation wait", timeout=30, query=RedisCachePlaybook.status)
        rep = await h.result()  # the server skips the 2 minutes while we wait
        (not_run,) = entries(rep, TimelineKind.FAILED)
        assert not_run.at_seconds >= 120 and TimelineKind.EXECUTING not in kinds(rep)
        assert rep.actions[0].state.value == "failed" and "never confirmed" in rep.actions[0].result
        assert rep.status == "failed"
        assert await w.count("*") == ALL


async def test_pattern_flush_leaves_other_keys(skipping_env):
    async with cache_world(skipping_env) as w:
        h = await w.start(pattern="provider:*")
        rep = await until(h, lambda r: len(r.actions) == 2, "proposals", timeout=30, query=RedisCachePlaybook.status)
        await w.decide(h, "flush-pattern", approve=True)
        await w.decide(h, "flushall", approve=False)
        rep = await h.result()
        res = rep.assessment["flush-pattern"]
        assert (res["deleted"], res["keys_before"], res["keys_after"]) == (PROVIDER_KEYS, ALL, SESSION_KEYS)
        assert await w.count("provider:*") == 0 and await w.count("session:*") == SESSION_KEYS


async def test_mismatched_endpoint_is_refused(skipping_env):
    async with cache_world(skipping_env) as w:
        # a Redis that is not the cluster's: the shared one on this machine — never touched
        h = await w.start(redis_address="127.0.0.1:6379")
        with pytest.raises(WorkflowFailureError) as ei:
            await h.result()
        cause = ei.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "EndpointMismatch" and cause.non_retryable
        assert "refusing Redis at 127.0.0.1:6379" in cause.message

        acts = CacheActivities(w.sandbox.config.aws, w.sandbox.config.cache)
        ours = w.sandbox.extras["redis"].address
        with pytest.raises(ApplicationError) as ae:  # the activity checks too, against the worker's config
            await acts.redis_flush(FlushRequest(target=RedisTarget(cluster_id=CLUSTER, cluster_endpoint=None,
                                                                   address="127.0.0.1:6379"), confirmation=CLUSTER))
        assert ae.value.type == "EndpointMismatch"
        with pytest.raises(ApplicationError) as ae:  # and refuses a full flush without the name
            await acts.redis_flush(FlushRequest(target=RedisTarget(cluster_id=CLUSTER, cluster_endpoint=None, address=ours)))
        assert ae.value.type == "NotConfirmed"
        assert await w.count("*") == ALL


async def test_unknown_cluster_is_a_clear_failure(empty_aws, monkeypatch):
    from domain.config import AwsConfig
    from domain.redis_cache import CacheClusterQuery

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
    acts = CacheActivities(AwsConfig(endpoint_url=empty_aws.endpoint_url), CacheConfig())
    with pytest.raises(ApplicationError) as ei:
        await acts.describe_cache_cluster(CacheClusterQuery(cluster_id="nope"))
    assert ei.value.type == "NotFound" and ei.value.non_retryable


@asynccontextmanager
async def _keyspace(keys: int, prefix: str = "visit:") -> AsyncIterator[tuple[RedisServer, aioredis.Redis]]:
    """A dedicated redis-server holding `keys` keys named prefix + number."""
    async with RedisServer() as rs:
        r = aioredis.Redis(host="127.0.0.1", port=rs.port)
        try:
            for start in range(0, keys, 5000):
                await r.mset({f"{prefix}{i}": 1 for i in range(start, min(keys, start + 5000))})
            yield rs, r
        finally:
            await r.aclose()


def _flush_acts(rs: RedisServer, **kw) -> CacheActivities:
    # scan_count 5: a scan of many short round trips, long next to the 0.05 s heartbeat
    return CacheActivities(AwsConfig(), CacheConfig(endpoint_override=rs.address, scan_count=5), **kw)


def _target(rs: RedisServer) -> RedisTarget:
    return RedisTarget(cluster_id=CLUSTER, cluster_endpoint=None, address=rs.address)


async def test_pattern_flush_heartbeats_on_a_timer_while_nothing_matches():
    async with _keyspace(40_000) as (rs, r):
        acts = _flush_acts(rs, heartbeat_seconds=0.05)
        env = ActivityEnvironment()
        beats: list[tuple[float, dict]] = []
        loop = asyncio.get_running_loop()
        env.on_heartbeat = lambda *d: beats.append((loop.time(), d[0] if d else {}))
        t0 = loop.time()
        res = await env.run(acts.redis_flush, FlushRequest(target=_target(rs), pattern="nomatch:*"))
        took = loop.time() - t0
        assert await r.dbsize() == 40_000
    assert res.deleted == 0 and res.keys_before == res.keys_after == 40_000
    assert took > 0.3, f"the scan took only {took:.2f}s: too short to show timer heartbeats"
    # a beat at least every few intervals all through the scan, with no key ever matching
    assert len(beats) >= took / 0.05 / 4, (len(beats), took)
    times = [t0] + [t for t, _ in beats] + [t0 + took]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.5
    mid = [d for _, d in beats if d.get("cursor")]
    assert mid and all(d["deleted"] == 0 and d["pattern"] == "nomatch:*" and d["run_id"] for d in mid)


async def test_pattern_flush_resumes_from_the_heartbeat_only_on_the_same_server(monkeypatch):
    async with _keyspace(3_000, prefix="session:") as (rs, r):
        await r.mset({f"provider:{i}": 1 for i in range(500)})
        run_id = (await r.info("server"))["run_id"]
        # an earlier attempt: some pages unlinked, then its worker died
        cursor, removed = 0, 0
        for _ in range(20):
            cursor, keys = await r.scan(cursor=cursor, match="session:*", count=10)
            removed += await r.unlink(*keys) if keys else 0
        assert cursor and removed
        progress = {"run_id": run_id, "db": 0, "pattern": "session:*", "cursor": cursor,
                    "deleted": removed, "keys_before": 3_500}
        first_cursors: list[int] = []
        real_scan = aioredis.Redis.scan

        async def spy(self, cursor=0, *a, **kw):
            if not first_cursors:
                first_cursors.append(int(cursor))
            return await real_scan(self, cursor, *a, **kw)

        monkeypatch.setattr(aioredis.Redis, "scan", spy)
        acts = _flush_acts(rs)
        req = FlushRequest(target=_target(rs), pattern="session:*")

        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, heartbeat_details=[progress])
        res = await env.run(acts.redis_flush, req)
        assert first_cursors == [cursor]  # carried on where the last attempt got to
        assert (res.deleted, res.keys_before, res.keys_after) == (3_000, 3_500, 500)
        assert "(resumed)" in res.detail
        assert await r.dbsize() == 500

        # another Redis process (restart, failover): its buckets differ, so start over
        await r.mset({f"session:{i}": 1 for i in range(100)})
        first_cursors.clear()
        env.info = dataclasses.replace(env.info, heartbeat_details=[{**progress, "run_id": "another-server"}])
        res = await env.run(acts.redis_flush, req)
        assert first_cursors == [0]
        assert (res.deleted, res.keys_before, res.keys_after) == (100, 600, 500)
        assert "(resumed)" not in res.detail
