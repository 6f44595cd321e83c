"""Drill driver for the Redis cache playbook: `cache-poisoned`."""

from __future__ import annotations

import redis.asyncio as aioredis

from domain.incident import ActionState, Decision, IncidentReport
from domain.redis_cache import CacheInput
from sandbox.drills.kit import IC, DrillContext, DrillOutcome, Watcher
from starters import service
from starters.redis_cache import start_cache_playbook


async def _count(port: int, pattern: str) -> int:
    r = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        return len([k async for k in r.scan_iter(match=pattern)])
    finally:
        await r.aclose()


async def drive_cache_poisoned(ctx: DrillContext) -> DrillOutcome:
    """Flush only the poisoned pattern, reject FLUSHALL; passes when the poisoned keys are gone,
    the live sessions remain and Redis answers PING."""
    from sandbox.scenario_redis_cache import POISONED, SESSION_KEYS
    from workflows.redis_cache import RedisCachePlaybook

    iid = ctx.new_id()
    h = await start_cache_playbook(ctx.client, CacheInput(incident_id=iid, requested_by="drill", commander=IC,
                                                          pattern=POISONED), ctx.task_queue)
    ctx.say(f"Cache playbook {h.id} — watch it at {ctx.link(h.id)}", highlight=False, soft_wrap=True)
    w = Watcher(h, ctx.say, RedisCachePlaybook.status)
    await w.until(lambda r: len(r.actions) == 2, "the flush proposals")
    for action, ok in (("flush-pattern", True), ("flushall", False)):
        d = Decision(action_id=action, approve=ok, by=IC,
                     reason="drill: only the poisoned keys" if ok else "drill: the pattern flush is enough")
        await service.execute_update(ctx.client, h.id, RedisCachePlaybook.decide, d, "decision")
    report: IncidentReport = await h.result()
    await w.poll()
    port = ctx.sandbox.extras["redis"].port
    poisoned, sessions = await _count(port, POISONED), await _count(port, "session:*")
    states = {a.id: a.state for a in report.actions}
    ok = (states.get("flush-pattern") == ActionState.EXECUTED and states.get("flushall") == ActionState.REJECTED
          and report.status == "resolved" and bool(report.verified) and poisoned == 0 and sessions == SESSION_KEYS)
    detail = f"{report.status}, {POISONED} keys left {poisoned}, sessions kept {sessions}/{SESSION_KEYS}"
    return DrillOutcome(report, ok, detail, h.id)
