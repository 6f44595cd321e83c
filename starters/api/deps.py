"""What every route depends on, through FastAPI's dependencies: the app's context (config,
tokens, Temporal, the alert spool), the token's principal and the role a route needs, and
a time bound on every call that waits for a workflow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from temporalio.client import Client

from domain.config import CodeBlueConfig, TemporalSettings
from domain.incident import INCIDENT_ID_PATTERN
from starters import service as svc
from starters.api import alerts
from starters.api.alert_forwarder import AlertForwarder
from starters.api.alert_spool import AlertSpool
from starters.api.auth import ADMIN, ALERTS, COMMANDER, RESPONDER, VIEWER, Principal, TokenBook
from starters.api.problems import Problem
from starters.api.ratelimit import RateLimiter
from worker.identity import acting_as

ClientFactory = Callable[[], Awaitable[Client]]
T = TypeVar("T")


class LazyClient:
    """Connects on first use and again after a failure, so the API starts before Temporal."""

    def __init__(self, factory: ClientFactory) -> None:
        self.factory = factory
        self.client: Client | None = None
        self.lock = asyncio.Lock()

    async def get(self) -> Client:
        if self.client is not None:
            return self.client
        async with self.lock:
            if self.client is None:
                try:
                    self.client = await self.factory()
                except svc.CodeBlueError as e:
                    raise Problem(503, str(e)) from None
                except (RuntimeError, OSError) as e:
                    raise Problem(503, f"cannot reach Temporal: {str(e).splitlines()[0][:160]}") from None
            return self.client


@dataclass
class ApiContext:
    """One per app, on `app.state.api`; routes reach it through `Depends(context)`."""

    cfg: CodeBlueConfig
    temporal_settings: TemporalSettings
    tokens: TokenBook
    temporal: LazyClient
    limiter: RateLimiter
    forwarder: AlertForwarder | None
    recent_alerts: alerts.RecentAlerts
    auth_failures: RateLimiter  # per client address: failed authentications

    @property
    def spool(self) -> AlertSpool | None:
        return self.forwarder.spool if self.forwarder else None

    def ui_link(self, workflow_id: str) -> str:
        return svc.ui_link(self.cfg.ui.base_url, self.temporal_settings.namespace, workflow_id)

    async def bounded(self, coro: Awaitable[T], who: Principal | None = None) -> T:
        """Updates wait for a worker; a request never hangs longer than the configured timeout.
        `who`: the token's principal, whose proof the command carries (worker.identity)."""
        limit = self.cfg.api.request_timeout_seconds
        try:
            if who is None:
                return await asyncio.wait_for(coro, limit)
            with acting_as(who.identity):
                return await asyncio.wait_for(coro, limit)
        except TimeoutError:
            raise Problem(504, f"no answer from the workflow within {limit:g} s; "
                          "is a CodeBlue worker running on the task queue?") from None


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.api
    return ctx


Context = Annotated[ApiContext, Depends(context)]


# async: FastAPI runs plain `def` dependencies in a thread pool, two thread hops per request.
async def principal(request: Request, ctx: Context) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "missing bearer token")
    p = ctx.tokens.lookup(token.strip())
    if p is None:
        client = request.client.host if request.client else "?"
        if not ctx.auth_failures.allow(client):  # a valid token is never held back by this
            raise Problem(429, "too many failed authentications from this address; retry later",
                          retry_after=ctx.auth_failures.retry_after())
        raise Problem(401, "invalid token")
    return p


def needs(role: str) -> Callable[..., Awaitable[Principal]]:
    async def check(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if not p.has(role):
            raise Problem(403, f"{p.name} lacks the {role} role")
        return p

    return check


async def temporal_client(ctx: Context) -> Client:
    return await ctx.temporal.get()


Anyone = Annotated[Principal, Depends(principal)]
Viewer = Annotated[Principal, Depends(needs(VIEWER))]
Responder = Annotated[Principal, Depends(needs(RESPONDER))]
Commander = Annotated[Principal, Depends(needs(COMMANDER))]
Admin = Annotated[Principal, Depends(needs(ADMIN))]
AlertSender = Annotated[Principal, Depends(needs(ALERTS))]
TemporalClient = Annotated[Client, Depends(temporal_client)]
IdPath = Annotated[str, Path(pattern=INCIDENT_ID_PATTERN, description="Incident ID")]
