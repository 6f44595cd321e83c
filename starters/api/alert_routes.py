"""`/alerts`: Alertmanager's webhook and a generic one (rate-limited per token, spooled when a
spool is configured), and the spool's dead letters for admins."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from starters.api import alerts
from starters.api.alert_spool import AlertSpool, SpoolError, SpoolFull
from starters.api.auth import Principal
from starters.api.deps import Admin, AlertSender, ApiContext, Context
from starters.api.problems import Problem

router = APIRouter(tags=["alerts"])
# How long a delivery past its token's rate may wait for its turn before it is answered 503
ALERT_PACING_SECONDS = 10.0


async def _take(ctx: ApiContext, hook: alerts.AmWebhook, p: Principal) -> dict[str, Any]:
    """A well-formed delivery is never refused with a 4xx for load: Alertmanager drops a group
    it got a 4xx for, and retries a 5xx only within its group interval. With a spool, the
    spool absorbs a storm (503 only when it is full); without one, a burst past the token's
    rate is paced (each request waits its turn, up to ALERT_PACING_SECONDS) and only then
    answered 503 with Retry-After."""
    cfg, forwarder = ctx.cfg, ctx.forwarder
    if forwarder is None:
        wait = ctx.limiter.reserve(p.name, ALERT_PACING_SECONDS)
        if wait is None:
            raise Problem(503, f"alert rate for {p.name} over api.alerts_per_second; retry later",
                          retry_after=ctx.limiter.retry_after())
        if wait:
            await asyncio.sleep(wait)
        return await ctx.bounded(alerts.ingest(await ctx.temporal.get(), hook, cfg.api, ctx.temporal_settings.task_queue,
                                               p.name, ctx.recent_alerts))
    forwarder.start()
    try:
        return await alerts.enqueue(forwarder.spool, forwarder.converter, hook, cfg.api, p.name, ctx.recent_alerts)
    except SpoolFull as e:
        raise Problem(503, f"alert spool full: {e}; retry later", retry_after=30) from None
    except SpoolError as e:
        raise Problem(503, str(e), retry_after=30) from None


_OVERLOAD: dict[int | str, dict[str, Any]] = {503: {"description": "overloaded (rate without a spool, or the spool full): retry after Retry-After"}}


@router.post("/alerts/alertmanager", responses=_OVERLOAD)
async def alertmanager(hook: alerts.AmWebhook, p: AlertSender, ctx: Context) -> dict[str, Any]:
    return await _take(ctx, hook, p)


@router.post("/alerts/webhook", responses=_OVERLOAD)
async def generic_webhook(hook: alerts.GenericWebhook, p: AlertSender, ctx: Context) -> dict[str, Any]:
    """Any tool that can POST JSON: `{"alerts": [{"name", "status", "severity", "service", ...}]}`."""
    return await _take(ctx, hook.as_alertmanager(ctx.cfg.api), p)


def _spool(ctx: ApiContext) -> AlertSpool:
    if ctx.spool is None:
        raise Problem(404, "no alert spool: alerts are delivered directly (api.alert_spool is unset)")
    return ctx.spool


@router.get("/alerts/dead-letters")
async def dead_letters(_: Admin, ctx: Context) -> dict[str, Any]:
    """Spooled alerts Temporal refused for good: which incident, why, when (never their text)."""
    sp = _spool(ctx)
    return {"count": await sp.dead_letter_count(), "dead_letters": await sp.dead_letters()}


@router.post("/alerts/dead-letters/requeue")
async def requeue_dead_letters(_: Admin, ctx: Context) -> dict[str, Any]:
    """After fixing the cause: every dead letter goes back in the queue."""
    sp = _spool(ctx)
    n = await sp.requeue_dead_letters()
    if ctx.forwarder:
        ctx.forwarder.start()
    return {"requeued": n, "alerts_waiting": sp.backlog}
