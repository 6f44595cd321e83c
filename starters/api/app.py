"""The FastAPI app: incidents, decisions, alerts and the codec server, behind bearer tokens."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse
from google.protobuf import json_format
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from domain import search_attributes as sa
from domain.config import CodeBlueConfig, TemporalSettings
from domain.incident import (
    INCIDENT_ID_PATTERN,
    BatchDecision,
    CommanderAssignment,
    Decision,
    DecisionBatch,
    DecisionResult,
    Escalation,
    IncidentInput,
    IncidentReport,
    Note,
    Phase,
    Resolution,
    ResolutionResult,
)
from domain.severity import Observations, Severity, classify
from starters import service as svc
from starters.api import alerts
from starters.api.alert_forwarder import AlertForwarder
from starters.api.alert_spool import AlertSpool, SpoolError, SpoolFull
from starters.api.auth import ADMIN, ALERTS, COMMANDER, RESPONDER, VIEWER, Principal, TokenBook
from starters.api.problems import Problem, problem_response, status_for
from starters.api.procedures import procedures_router
from starters.api.ratelimit import RateLimiter
from starters.api.slack import slack_router
from worker.codec import EncryptionCodec
from worker.identity import acting_as

ClientFactory = Callable[[], Awaitable[Client]]
ID_PATTERN = INCIDENT_ID_PATTERN
# workflow IDs CodeBlue derives from an incident's: nobody may start an incident under one
RESERVED_SUFFIXES = ("-postmortem", "-db-restore", "-redeploy", "-cache", "-memory", "-db-connections", "-reopened")


def reserved_id(incident_id: str) -> bool:
    """An incident's procedures are `<ID><suffix>` and, for a later run of the same ID,
    `<ID><suffix>-N`: no incident may take such an ID."""
    return re.sub(r"-\d+$", "", incident_id).endswith(RESERVED_SUFFIXES)


@dataclass
class ApiSettings:
    config: CodeBlueConfig = field(default_factory=CodeBlueConfig)
    temporal: TemporalSettings = field(default_factory=TemporalSettings.from_env)
    tokens: TokenBook | None = None  # None: from config.api and its env var


class _Body(BaseModel):
    model_config = {"extra": "forbid"}


class StartIncident(_Body):
    title: str = Field(min_length=1, max_length=200)
    severity: Severity | None = None
    service: str = Field(default="api-gateway", min_length=1, max_length=100)
    commander: str | None = Field(default=None, max_length=64)
    incident_id: str | None = Field(default=None, pattern=ID_PATTERN)
    outage: bool = False
    security: bool = False
    patient_safety: bool = False
    major_feature: bool = False
    auth: bool = False
    degradation: float | None = Field(default=None, ge=0, le=100)
    public_summary: str | None = Field(default=None, max_length=500)


class Started(BaseModel):
    incident_id: str
    severity: Severity
    ui_url: str


class DecisionBody(_Body):
    action_id: str = Field(min_length=1, max_length=64)
    approve: bool
    reason: str | None = Field(default=None, max_length=2000)


class DecisionsBody(_Body):
    decisions: list[DecisionBody] = Field(min_length=1, max_length=50)


class ResolveBody(_Body):
    summary: str = Field(min_length=1, max_length=2000)
    force: bool = False
    public_summary: str | None = Field(default=None, max_length=500)


class CommanderBody(_Body):
    commander: str = Field(min_length=1, max_length=64)


class EscalateBody(_Body):
    severity: Severity
    reason: str = Field(default="", max_length=2000)


class NoteBody(_Body):
    text: str = Field(min_length=1, max_length=4000)


class Accepted(BaseModel):
    incident_id: str
    message: str


class IncidentRow(BaseModel):
    incident_id: str
    severity: str
    phase: str
    service: str
    commander: str
    started: str


class PayloadsBody(BaseModel):
    """The Temporal codec server format: payloads in proto3 JSON (base64 metadata and data)."""

    payloads: list[dict[str, Any]] = Field(max_length=1000)


class _LazyClient:
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


class _BodyLimit:
    """ASGI middleware: 413 before reading more than `limit` bytes of a request body (the body
    is read here, at most `limit` bytes, and replayed to the app)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = problem_response(413, f"request body over {self.limit} bytes")
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                return await too_large(scope, receive, send)
        chunks, seen = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # client went away
            chunks.append(msg.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
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


def _alert_forwarder(cfg: CodeBlueConfig, temporal: _LazyClient, task_queue: str,
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
    tokens = s.tokens or TokenBook.from_config(cfg.api)
    temporal = _LazyClient(client_factory)
    limiter = RateLimiter(cfg.api.alerts_per_second, cfg.api.alerts_burst)
    forwarder = _alert_forwarder(cfg, temporal, s.temporal.task_queue, s.temporal.metrics_bind)
    spool = forwarder.spool if forwarder else None

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
        version="0.1.0",
        description="Incident response for the healthcare platform: start and steer incidents, "
        "ingest Alertmanager alerts, decode encrypted history for the Temporal UI. "
        "Every endpoint but /healthz and /readyz needs `Authorization: Bearer <token>`.",
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[cfg.api.ui_origin],
        allow_methods=["POST", "GET", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
    )
    app.add_middleware(_BodyLimit, limit=cfg.api.max_body_bytes)

    # ------------------------------------------------------------------ errors
    @app.exception_handler(Problem)
    async def _problem(_: Request, p: Problem):
        headers = {"WWW-Authenticate": "Bearer"} if p.status == 401 else None
        if p.status == 429:
            headers = {"Retry-After": str(limiter.retry_after())}
        elif p.retry_after is not None:
            headers = {"Retry-After": str(p.retry_after)}
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

    # ------------------------------------------------------------------ auth
    # async: FastAPI runs plain `def` dependencies in a thread pool, two thread hops per request.
    async def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(401, "missing bearer token")
        p = tokens.lookup(token.strip())
        if p is None:
            raise Problem(401, "invalid token")
        return p

    def needs(role: str) -> Callable[..., Awaitable[Principal]]:
        async def check(p: Principal = Depends(principal)) -> Principal:
            if not p.has(role):
                raise Problem(403, f"{p.name} lacks the {role} role")
            return p

        return check

    async def client() -> Client:
        return await temporal.get()

    async def bounded(coro, who: Principal | None = None):
        """Updates wait for a worker; a request never hangs longer than the configured timeout.
        `who`: the token's principal, whose proof the command carries (worker.identity)."""
        try:
            if who is None:
                return await asyncio.wait_for(coro, cfg.api.request_timeout_seconds)
            with acting_as(who.identity):
                return await asyncio.wait_for(coro, cfg.api.request_timeout_seconds)
        except TimeoutError:
            raise Problem(504, f"no answer from the workflow within {cfg.api.request_timeout_seconds:g} s; "
                          "is a CodeBlue worker running on the task queue?") from None

    IdPath = Path(pattern=ID_PATTERN, description="Incident ID")
    app.include_router(procedures_router(
        needs, client, bounded, s.temporal.task_queue,
        lambda wid: svc.ui_link(cfg.ui.base_url, s.temporal.namespace, wid), cfg.mitigation.approvers))
    app.include_router(slack_router(cfg, tokens, client, bounded))  # Slack-signed, not bearer tokens

    # ------------------------------------------------------------------ probes
    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], responses={503: {"description": "Temporal unreachable"}})
    async def readyz() -> dict[str, Any]:
        c = await temporal.get()
        try:
            await c.service_client.check_health(timeout=timedelta(seconds=3))
        except Exception as e:  # noqa: BLE001 - any failure means not ready
            raise Problem(503, f"Temporal unreachable: {type(e).__name__}") from None
        if spool is None:
            return {"status": "ready"}
        return {"status": "ready", "alerts_waiting": spool.backlog}

    @app.get("/whoami", tags=["auth"])
    async def whoami(p: Principal = Depends(principal)) -> dict[str, Any]:
        """The token's principal: what every command this token sends is signed as."""
        return {"name": p.name, "roles": sorted(p.roles)}

    # ------------------------------------------------------------------ incidents
    @app.post("/incidents", status_code=201, tags=["incidents"], response_model=Started)
    async def start_incident(body: StartIncident, p: Principal = Depends(needs(RESPONDER)), c: Client = Depends(client)):
        obs = Observations(
            complete_outage=body.outage,
            security_incident=body.security,
            patient_safety_impact=body.patient_safety,
            major_feature_unavailable=body.major_feature,
            authentication_issues=body.auth,
            performance_degradation_pct=body.degradation,
        )
        cls = classify(obs)
        sev = body.severity or cls.severity
        reasons = cls.reasons if body.severity is None or body.severity == cls.severity else [f"set by {p.name}"]
        if body.incident_id and reserved_id(body.incident_id):
            raise Problem(422, f"incident IDs may not end in {', '.join(RESERVED_SUFFIXES)} (or those with -N): "
                          "those name an incident's own procedures")
        iid = body.incident_id or f"INC-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
        inp = IncidentInput(
            incident_id=iid, title=body.title, severity=sev, service=body.service, commander=body.commander,
            requested_by=p.name, security_incident=body.security, severity_reasons=reasons,
            public_summary=body.public_summary,
        )
        with acting_as(p.identity):
            await svc.start_incident(c, inp, s.temporal.task_queue)
        return Started(incident_id=iid, severity=sev, ui_url=svc.ui_link(cfg.ui.base_url, s.temporal.namespace, iid))

    @app.get("/incidents", tags=["incidents"], response_model=list[IncidentRow])
    async def list_incidents(
        severity: Severity | None = Query(None),
        phase: Phase | None = Query(None),
        _: Principal = Depends(needs(VIEWER)),
        c: Client = Depends(client),
    ):
        q = "WorkflowType = 'IncidentResponseWorkflow' AND ExecutionStatus = 'Running'"
        # Enum values only: nothing from the caller is pasted into the query as free text.
        if severity:
            q += f" AND {sa.SEVERITY.name} = '{severity.value}'"
        if phase:
            q += f" AND {sa.PHASE.name} = '{phase.value}'"
        rows = []
        async for w in c.list_workflows(q):
            a = w.typed_search_attributes
            rows.append(IncidentRow(
                incident_id=w.id, severity=a.get(sa.SEVERITY) or "?", phase=a.get(sa.PHASE) or "?",
                service=a.get(sa.SERVICE) or "?", commander=a.get(sa.COMMANDER) or "?",
                started=w.start_time.isoformat(timespec="seconds") if w.start_time else "?",
            ))
        return rows

    @app.get("/incidents/{incident_id}", tags=["incidents"], response_model=IncidentReport)
    async def get_incident(incident_id: str = IdPath, _: Principal = Depends(needs(VIEWER)), c: Client = Depends(client)):
        return await bounded(svc.status(c, incident_id))

    @app.get("/incidents/{incident_id}/postmortem", tags=["incidents"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/markdown": {}}}})
    async def postmortem(incident_id: str = IdPath, _: Principal = Depends(needs(VIEWER)), c: Client = Depends(client)):
        from starters import service_postmortem

        md = await bounded(service_postmortem.draft(c, incident_id))
        return PlainTextResponse(md, media_type="text/markdown; charset=utf-8")

    @app.post(
        "/incidents/{incident_id}/decisions", tags=["incidents"], response_model=DecisionResult,
        responses={403: {"description": "not the IC"}, 409: {"description": "already decided"}},
    )
    async def decide(body: DecisionBody, incident_id: str = IdPath, p: Principal = Depends(needs(COMMANDER)),
                     c: Client = Depends(client)):
        d = Decision(action_id=body.action_id, approve=body.approve, by=p.name, reason=body.reason)
        return await bounded(svc.decide(c, incident_id, d), p)

    @app.post(
        "/incidents/{incident_id}/decisions/batch", tags=["incidents"], response_model=list[DecisionResult],
        responses={403: {"description": "not the IC"}, 409: {"description": "one of them already decided"}},
    )
    async def decide_many(body: DecisionsBody, incident_id: str = IdPath, p: Principal = Depends(needs(COMMANDER)),
                          c: Client = Depends(client)):
        """Several decisions at once, all or none: approved actions run in the order given."""
        batch = DecisionBatch(by=p.name, decisions=[
            BatchDecision(action_id=d.action_id, approve=d.approve, reason=d.reason) for d in body.decisions])
        return await bounded(svc.decide_many(c, incident_id, batch), p)

    @app.post("/incidents/{incident_id}/resolve", tags=["incidents"], response_model=ResolutionResult)
    async def resolve(body: ResolveBody, incident_id: str = IdPath, p: Principal = Depends(needs(COMMANDER)),
                      c: Client = Depends(client)):
        res = await bounded(svc.resolve(c, incident_id, Resolution(by=p.name, summary=body.summary, force=body.force,
                                                                         public_summary=body.public_summary)), p)
        if not res.resolved:
            raise Problem(409, res.message)
        return res

    @app.post("/incidents/{incident_id}/commander", status_code=202, tags=["incidents"], response_model=Accepted)
    async def assign(body: CommanderBody, incident_id: str = IdPath, p: Principal = Depends(needs(COMMANDER)),
                     c: Client = Depends(client)):
        with acting_as(p.identity):
            await svc.assign_commander(c, incident_id, CommanderAssignment(commander=body.commander, by=p.name))
        return Accepted(incident_id=incident_id, message=f"commander assignment sent: {body.commander}")

    @app.post("/incidents/{incident_id}/escalate", status_code=202, tags=["incidents"], response_model=Accepted)
    async def escalate(body: EscalateBody, incident_id: str = IdPath, p: Principal = Depends(needs(RESPONDER)),
                       c: Client = Depends(client)):
        with acting_as(p.identity):
            await svc.escalate(c, incident_id, Escalation(severity=body.severity, by=p.name, reason=body.reason))
        return Accepted(incident_id=incident_id, message=f"escalation sent: {body.severity.value}")

    @app.post("/incidents/{incident_id}/notes", status_code=202, tags=["incidents"], response_model=Accepted)
    async def add_note(body: NoteBody, incident_id: str = IdPath, p: Principal = Depends(needs(RESPONDER)),
                       c: Client = Depends(client)):
        with acting_as(p.identity):
            await svc.add_note(c, incident_id, Note(by=p.name, text=body.text))
        return Accepted(incident_id=incident_id, message="note added")

    # ------------------------------------------------------------------ alerts
    recent_alerts = alerts.RecentAlerts(cfg.api.alert_repeat_window_seconds)

    async def take_alerts(hook: alerts.AmWebhook, p: Principal) -> dict[str, Any]:
        if not limiter.allow(p.name):
            raise Problem(429, f"alert rate limit for {p.name} exceeded")
        if forwarder is None:
            return await bounded(alerts.ingest(await temporal.get(), hook, cfg.api, s.temporal.task_queue, p.name,
                                               recent_alerts))
        forwarder.start()
        try:
            return await alerts.enqueue(forwarder.spool, forwarder.converter, hook, cfg.api, p.name, recent_alerts)
        except SpoolFull as e:
            raise Problem(503, f"alert spool full: {e}; retry later", retry_after=30) from None
        except SpoolError as e:
            raise Problem(503, str(e), retry_after=30) from None

    @app.post("/alerts/alertmanager", tags=["alerts"], responses={429: {"description": "rate limited"}})
    async def alertmanager(hook: alerts.AmWebhook, p: Principal = Depends(needs(ALERTS))) -> dict[str, Any]:
        return await take_alerts(hook, p)

    @app.post("/alerts/webhook", tags=["alerts"], responses={429: {"description": "rate limited"}})
    async def generic_webhook(hook: alerts.GenericWebhook, p: Principal = Depends(needs(ALERTS))) -> dict[str, Any]:
        """Any tool that can POST JSON: `{"alerts": [{"name", "status", "severity", "service", ...}]}`."""
        return await take_alerts(hook.as_alertmanager(cfg.api), p)

    def _spool() -> AlertSpool:
        if spool is None:
            raise Problem(404, "no alert spool: alerts are delivered directly (api.alert_spool is unset)")
        return spool

    @app.get("/alerts/dead-letters", tags=["alerts"])
    async def dead_letters(_: Principal = Depends(needs(ADMIN))) -> dict[str, Any]:
        """Spooled alerts Temporal refused for good: which incident, why, when (never their text)."""
        sp = _spool()
        return {"count": await sp.dead_letter_count(), "dead_letters": await sp.dead_letters()}

    @app.post("/alerts/dead-letters/requeue", tags=["alerts"])
    async def requeue_dead_letters(_: Principal = Depends(needs(ADMIN))) -> dict[str, Any]:
        """After fixing the cause: every dead letter goes back in the queue."""
        sp = _spool()
        n = await sp.requeue_dead_letters()
        if forwarder:
            forwarder.start()
        return {"requeued": n, "alerts_waiting": sp.backlog}

    # ------------------------------------------------------------------ codec server
    async def _codec(body: PayloadsBody, c: Client, encode: bool) -> dict[str, Any]:
        codec = c.data_converter.payload_codec
        if isinstance(codec, EncryptionCodec):
            codec = codec.lenient()  # the UI's decoding: no workflow context, older plaintext shown
        try:
            ps = json_format.ParseDict({"payloads": body.payloads}, Payloads())
        except json_format.ParseError as e:
            raise Problem(422, f"payloads: {e}") from None
        if codec is None:
            return json_format.MessageToDict(ps)
        try:
            out = await (codec.encode(ps.payloads) if encode else codec.decode(ps.payloads))
        except Exception as e:  # noqa: BLE001 - CodecKeyError et al.; never echo payload data
            raise Problem(422, str(e) if type(e).__name__ == "CodecKeyError" else "payload cannot be decoded") from None
        return json_format.MessageToDict(Payloads(payloads=out))

    @app.post("/codec/encode", tags=["codec"])
    async def codec_encode(body: PayloadsBody, _: Principal = Depends(needs(RESPONDER)), c: Client = Depends(client)):
        return await _codec(body, c, encode=True)

    @app.post("/codec/decode", tags=["codec"])
    async def codec_decode(body: PayloadsBody, _: Principal = Depends(needs(VIEWER)), c: Client = Depends(client)):
        return await _codec(body, c, encode=False)

    app.state.limiter = limiter
    app.state.alert_spool, app.state.alert_forwarder = spool, forwarder
    app.state.roles = (VIEWER, RESPONDER, COMMANDER, ADMIN, ALERTS)
    return app
