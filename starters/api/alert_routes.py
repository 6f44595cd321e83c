"""`/alerts`: Alertmanager's webhook and a generic one (rate-limited per token, spooled when a
spool is configured), and the spool's dead letters for admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from starters.api import alerts
from starters.api.alert_spool import AlertSpool, SpoolError, SpoolFull
from starters.api.auth import Principal
from starters.api.deps import Admin, AlertSender, ApiContext, Context
from starters.api.problems import Problem

router = APIRouter(tags=["alerts"])


async def _take(ctx: ApiContext, hook: alerts.AmWebhook, p: Principal) -> dict[str, Any]:
    if not ctx.limiter.allow(p.name):
        raise Problem(429, f"alert rate limit for {p.name} exceeded")
    cfg, forwarder = ctx.cfg, ctx.forwarder
    if forwarder is None:
        return await ctx.bounded(alerts.ingest(await ctx.temporal.get(), hook, cfg.api, ctx.temporal_settings.task_queue,
                                               p.name, ctx.recent_alerts))
    forwarder.start()
    try:
        return await alerts.enqueue(forwarder.spool, forwarder.converter, hook, cfg.api, p.name, ctx.recent_alerts)
    except SpoolFull as e:
        raise Problem(503, f"alert spool full: {e}; retry later", retry_after=30) from None
    except SpoolError as e:
        raise Problem(503, str(e), retry_after=30) from None


@router.post("/alerts/alertmanager", responses={429: {"description": "rate limited"}})
async def alertmanager(hook: alerts.AmWebhook, p: AlertSender, ctx: Context) -> dict[str, Any]:
    return await _take(ctx, hook, p)


@router.post("/alerts/webhook", responses={429: {"description": "rate limited"}})
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
