"""The FastAPI app: incidents, decisions, alerts and the codec server, behind bearer tokens.

The routes live in one router per resource (`incidents`, `alert_routes`, `codec_routes`,
`procedures`, `slack`, `probes`); they reach the app's state through `deps`. Here: the
context, the middleware and the error handlers every route shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from domain.config import CodeBlueConfig, TemporalSettings
from domain.release import package_version
from starters import service as svc
from starters.api import alert_routes, alerts, codec_routes, incidents, probes, procedures
from starters.api.alert_forwarder import AlertForwarder
from starters.api.alert_spool import AlertSpool
from starters.api.auth import ADMIN, ALERTS, COMMANDER, RESPONDER, VIEWER, TokenBook
from starters.api.deps import ApiContext, ClientFactory, LazyClient
from starters.api.problems import Problem, problem_response, status_for
from starters.api.ratelimit import RateLimiter
from starters.api.slack import slack_router


@dataclass
class ApiSettings:
    config: CodeBlueConfig = field(default_factory=CodeBlueConfig)
    temporal: TemporalSettings = field(default_factory=TemporalSettings.from_env)
    tokens: TokenBook | None = None  # None: from config.api and its env var


class _BodyLimit:
    """ASGI middleware: 413 before reading more than the limit of a request body (the body is
    read here, at most that many bytes, and replayed to the app). The alert routes have their
    own, larger limit (`api.max_alert_body_bytes`): an Alertmanager group comes whole."""

    def __init__(self, app, limit: int, alert_limit: int | None = None) -> None:
        self.app, self.default_limit = app, limit
        self.alert_limit = alert_limit or limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.alert_limit if scope.get("path", "").startswith("/alerts/") else self.default_limit
        too_large = problem_response(413, f"request body over {limit} bytes")
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                return await too_large(scope, receive, send)
        chunks, seen = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # client went away
            chunks.append(msg.get("body", b""))
            seen += len(chunks[-1])
            if seen > limit:
                return await too_large(scope, receive, send)
            if not msg.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _alert_forwarder(cfg: CodeBlueConfig, temporal: LazyClient, task_queue: str,
                     metrics_bind: str | None = None) -> AlertForwarder | None:
    """The spool is opened at start-up, so a bad path or a second owner fails before serving
    (SpoolError); None: alerts are delivered directly. With `metrics_bind` (CODEBLUE_METRICS_BIND)
    its backlog and dead letters are gauges on that Prometheus endpoint (starters.api.metrics)."""
    if not cfg.api.alert_spool:
        return None
    from starters.api.metrics import spool_metrics
    from worker.temporal import data_converter

    spool = AlertSpool(cfg.api.alert_spool, cfg.api.alert_spool_max_alerts, metrics=spool_metrics(metrics_bind))
    return AlertForwarder(spool, temporal.get, task_queue, data_converter())


def create_app(client_factory: ClientFactory, settings: ApiSettings | None = None) -> FastAPI:
    s = settings or ApiSettings()
    cfg = s.config
    temporal = LazyClient(client_factory)
    limiter = RateLimiter(cfg.api.alerts_per_second, cfg.api.alerts_burst)
    forwarder = _alert_forwarder(cfg, temporal, s.temporal.task_queue, s.temporal.metrics_bind)
    ctx = ApiContext(cfg=cfg, temporal_settings=s.temporal, tokens=s.tokens or TokenBook.from_config(cfg.api),
                     temporal=temporal, limiter=limiter, forwarder=forwarder,
                     recent_alerts=alerts.RecentAlerts(cfg.api.alert_repeat_window_seconds),
                     auth_failures=RateLimiter(cfg.api.auth_failures_per_minute / 60, cfg.api.auth_failures_burst,
                                               max_keys=10_000))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if forwarder:
            forwarder.start()  # delivers what an earlier run accepted and did not deliver
        yield
        if forwarder:
            await forwarder.stop(drain_seconds=10)
            await forwarder.spool.close()

    app = FastAPI(
        lifespan=lifespan,
        title="CodeBlue",
        version=package_version(),
        description="Incident response for the healthcare platform: start and steer incidents, "
        "ingest Alertmanager alerts, decode encrypted history for the Temporal UI. "
        "Every endpoint but /healthz and /readyz needs `Authorization: Bearer <token>`.",
    )
    app.state.api = ctx
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[cfg.api.ui_origin],
        allow_methods=["POST", "GET", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
    )
    app.add_middleware(_BodyLimit, limit=cfg.api.max_body_bytes, alert_limit=cfg.api.max_alert_body_bytes)

    # ------------------------------------------------------------------ errors
    @app.exception_handler(Problem)
    async def _problem(_: Request, p: Problem):
        headers = {"WWW-Authenticate": "Bearer"} if p.status == 401 else None
        if p.retry_after is not None:
            headers = {"Retry-After": str(p.retry_after)}
        elif p.status == 429:
            headers = {"Retry-After": str(limiter.retry_after())}
        return problem_response(p.status, p.detail, p.title, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        errs = e.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return problem_response(400, "malformed JSON body")
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "body"
        return problem_response(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(ValidationError)
    async def _invalid_model(_: Request, e: ValidationError):
        """A body that passed the API's model but not the workflow's (a stricter domain limit)."""
        errs = e.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid"}
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        return problem_response(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        return problem_response(e.status_code, str(e.detail))

    @app.exception_handler(svc.CodeBlueError)
    async def _codeblue(_: Request, e: svc.CodeBlueError):
        return problem_response(status_for(str(e)), str(e))

    @app.exception_handler(RPCError)
    async def _rpc(_: Request, e: RPCError):
        return problem_response(status_for(str(svc.rpc_error(e, "?"))), str(svc.rpc_error(e, "?")))

    @app.exception_handler(WorkflowUpdateRPCTimeoutOrCancelledError)
    async def _update_timeout(_: Request, e: Exception):
        return problem_response(504, "the workflow did not answer in time; is a CodeBlue worker running on the task queue?")

    @app.exception_handler(WorkflowQueryFailedError)
    async def _query_failed(_: Request, e: WorkflowQueryFailedError):
        return problem_response(502, f"the workflow could not answer: {str(e).splitlines()[0][:200]}")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception):
        # Never a trace to the caller; the class name is enough to find it in the server log.
        return problem_response(500, f"internal error ({type(e).__name__})", "Internal error")

    app.include_router(slack_router(cfg, ctx.tokens, lambda: temporal.get(), ctx.bounded))  # Slack-signed, not bearer tokens
    for router in (procedures.router, probes.router, incidents.router, alert_routes.router, codec_routes.router):
        app.include_router(router)

    spool: AlertSpool | None = ctx.spool
    app.state.limiter = limiter
    app.state.alert_spool, app.state.alert_forwarder = spool, forwarder
    app.state.roles = (VIEWER, RESPONDER, COMMANDER, ADMIN, ALERTS)
    return app
