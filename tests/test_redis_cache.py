"""The Redis cache playbook: ElastiCache via moto_server, Redis via a dedicated redis-server."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from activities.cache import CacheActivities
from domain.cache import FlushConfirmation, FlushRequest, RedisTarget
from domain.config import CacheConfig
from sandbox.scenario_cache_poisoned import CLUSTER, PROVIDER_KEYS, SESSION_KEYS
from starters.cache import confirm_flush
from starters.service import CodeBlueError
from tests.cache_fixtures import cache_world, until
from worker.temporal import data_converter, replayer
from workflows.redis_cache import RedisCachePlaybook

ALL = PROVIDER_KEYS + SESSION_KEYS


async def test_flushall_runs_only_with_the_cluster_name_confirmed(skipping_env):
    async with cache_world(skipping_env) as w:
        h = await w.start()
        rep = await until(h, lambda r: bool(r.actions), "proposals")
        stats = next(e.result for e in rep.timeline if e.event == "Redis stats")
        assert f"keys {ALL}" in stats and "hit ratio 0.0%" in stats
        await w.decide(h, "flushall", approve=True)
        await until(h, lambda r: "Waiting for FLUSHALL confirmation" in [e.event for e in r.timeline], "confirmation wait")
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
        await until(h, lambda r: bool(r.actions), "proposals")
        await w.decide(h, "flushall", approve=True)
        await until(h, lambda r: "Waiting for FLUSHALL confirmation" in [e.event for e in r.timeline], "confirmation wait")
        rep = await h.result()  # the server skips the 2 minutes while we wait
        assert next(e.at_seconds for e in rep.timeline if e.event == "FLUSHALL not run") >= 120
        assert rep.actions[0].state.value == "failed" and "never confirmed" in rep.actions[0].result
        assert rep.status == "failed"
        assert await w.count("*") == ALL


async def test_pattern_flush_leaves_other_keys(skipping_env):
    async with cache_world(skipping_env) as w:
        h = await w.start(pattern="provider:*")
        rep = await until(h, lambda r: len(r.actions) == 2, "proposals")
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
        with pytest.raises(ApplicationError) as ei:  # the activity checks too, against the worker's config
            await acts.redis_flush(FlushRequest(target=RedisTarget(cluster_id=CLUSTER, cluster_endpoint=None,
                                                                   address="127.0.0.1:6379"), confirmation=CLUSTER))
        assert ei.value.type == "EndpointMismatch"
        with pytest.raises(ApplicationError) as ei:  # and refuses a full flush without the name
            await acts.redis_flush(FlushRequest(target=RedisTarget(cluster_id=CLUSTER, cluster_endpoint=None, address=ours)))
        assert ei.value.type == "NotConfirmed"
        assert await w.count("*") == ALL


async def test_unknown_cluster_is_a_clear_failure():
    from sandbox.aws import AwsEmulator
    from domain.cache import CacheClusterQuery
    from domain.config import AwsConfig

    async with AwsEmulator() as aws:
        acts = CacheActivities(AwsConfig(endpoint_url=aws.endpoint_url), CacheConfig())
        import os
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "sandbox")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "sandbox")
        with pytest.raises(ApplicationError) as ei:
            await acts.describe_cache_cluster(CacheClusterQuery(cluster_id="nope"))
        assert ei.value.type == "NotFound" and ei.value.non_retryable
