"""Liveness, readiness (Temporal reachable) and `/whoami` (what a token signs as)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter

from starters.api.deps import Anyone, Context
from starters.api.problems import Problem

router = APIRouter()


@router.get("/healthz", tags=["probes"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["probes"], responses={503: {"description": "Temporal unreachable"}})
async def readyz(ctx: Context) -> dict[str, Any]:
    c = await ctx.temporal.get()
    try:
        await c.service_client.check_health(timeout=timedelta(seconds=3))
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        raise Problem(503, f"Temporal unreachable: {type(e).__name__}") from None
    if ctx.spool is None:
        return {"status": "ready"}
    return {"status": "ready", "alerts_waiting": ctx.spool.backlog}


@router.get("/whoami", tags=["auth"])
async def whoami(p: Anyone) -> dict[str, Any]:
    """The token's principal: what every command this token sends is signed as."""
    return {"name": p.name, "roles": sorted(p.roles)}
