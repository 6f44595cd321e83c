"""The cache-poisoned sandbox (moto_server ElastiCache + a dedicated redis-server) with a
worker on the time-skipping server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import redis.asyncio as aioredis
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.http_client import tls_context
from domain.incident import Decision
from domain.redis_cache import CacheInput
from starters import service
from starters.redis_cache import start_cache_playbook
from worker.main import activities_for
from workflows.blast_radius import BlastRadiusGuard
from workflows.redis_cache import RedisCachePlaybook

if TYPE_CHECKING:
    from sandbox.scenarios import SandboxEnvironment


@dataclass
class CacheWorld:
    env: WorkflowEnvironment
    sandbox: SandboxEnvironment
    task_queue: str

    @property
    def redis(self) -> aioredis.Redis:
        return aioredis.Redis(host="127.0.0.1", port=self.sandbox.extras["redis"].port, decode_responses=True)

    async def count(self, pattern: str) -> int:
        r = self.redis
        try:
            return len([k async for k in r.scan_iter(match=pattern)])
        finally:
            await r.aclose()

    async def start(self, **kw) -> WorkflowHandle:
        inp = CacheInput(incident_id=f"INC-{uuid.uuid4().hex[:8]}", requested_by="oncall", commander="alice", **kw)
        return await start_cache_playbook(self.env.client, inp, self.task_queue)

    async def decide(self, h: WorkflowHandle, action: str, approve: bool) -> None:
        await service.execute_update(self.env.client, h.id, RedisCachePlaybook.decide,
                              Decision(action_id=action, approve=approve, by="alice", reason=None if approve else "no"),
                              "decision")


@asynccontextmanager
async def cache_world(env: WorkflowEnvironment) -> AsyncIterator[CacheWorld]:
    from sandbox.scenarios import sandbox_environment

    async with sandbox_environment("cache-poisoned") as sb, httpx.AsyncClient(verify=tls_context(), timeout=5) as http:
        tq = f"tq-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=tq, workflows=[RedisCachePlaybook, BlastRadiusGuard],
                          activities=activities_for(sb.config, http)):
            yield CacheWorld(env, sb, tq)

