"""`/incidents`: start, list, read and steer incidents (decisions, resolve, commander,
escalation, notes) and their post-mortem draft."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from domain import search_attributes as sa
from domain.alerts import ALERT_PREFIX
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
    ServiceNaming,
)
from domain.procedures import DERIVED_SUFFIXES
from domain.severity import Observations, Severity, classify
from starters import service as svc
from starters.api.auth import ADMIN, Principal
from starters.api.deps import Commander, Context, IdPath, Responder, TemporalClient, Viewer
from starters.api.problems import Problem
from worker.identity import acting_as

ID_PATTERN = INCIDENT_ID_PATTERN
# workflow IDs CodeBlue derives from an incident's: nobody may start an incident under one
RESERVED_SUFFIXES = DERIVED_SUFFIXES


def reserved_id(incident_id: str) -> bool:
    """An incident's procedures are `<ID><suffix>` and, for a later run of the same ID,
    `<ID><suffix>-N`: no incident may take such an ID."""
    return re.sub(r"-\d+$", "", incident_id).endswith(RESERVED_SUFFIXES)


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
    # admins only, with an approval: why the step may go past the blast-radius policy's hourly
    # rate or replica ceiling (recorded on the action and the timeline)
    override: str | None = Field(default=None, min_length=1, max_length=2000)


class DecisionsBody(_Body):
    decisions: list[DecisionBody] = Field(min_length=1, max_length=50)


class ServiceBody(_Body):
    service: str = Field(min_length=1, max_length=200)


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


router = APIRouter(tags=["incidents"])


@router.post("/incidents", status_code=201, tags=["incidents"], response_model=Started)
async def start_incident(body: StartIncident, p: Responder, c: TemporalClient, ctx: Context):
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
    if body.incident_id and body.incident_id.startswith(ALERT_PREFIX):
        raise Problem(422, f"incident IDs starting {ALERT_PREFIX} are the alert path's: choose another ID")
    iid = body.incident_id or f"INC-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    inp = IncidentInput(
        incident_id=iid, title=body.title, severity=sev, service=body.service, commander=body.commander,
        requested_by=p.name, security_incident=body.security, severity_reasons=reasons,
        public_summary=body.public_summary,
    )
    with acting_as(p.identity):
        await svc.start_incident(c, inp, ctx.temporal_settings.task_queue)
    return Started(incident_id=iid, severity=sev, ui_url=ctx.ui_link(iid))

@router.get("/incidents", tags=["incidents"], response_model=list[IncidentRow])
async def list_incidents(
    _: Viewer,
    c: TemporalClient,
    severity: Severity | None = Query(None),
    phase: Phase | None = Query(None),
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

@router.get("/incidents/{incident_id}", tags=["incidents"], response_model=IncidentReport)
async def get_incident(incident_id: IdPath, _: Viewer, c: TemporalClient, ctx: Context):
    return await ctx.bounded(svc.status(c, incident_id))

@router.get("/incidents/{incident_id}/postmortem", tags=["incidents"], response_class=PlainTextResponse,
         responses={200: {"content": {"text/markdown": {}}}})
async def postmortem(incident_id: IdPath, _: Viewer, c: TemporalClient, ctx: Context):
    from starters import post_incident

    md = await ctx.bounded(post_incident.draft(c, incident_id))
    return PlainTextResponse(md, media_type="text/markdown; charset=utf-8")

def _override_allowed(decisions: list[DecisionBody], p: Principal) -> None:
    """The workflow refuses a non-admin's override too; here it is a 403 before anything is sent."""
    if any(d.override is not None for d in decisions) and not p.has(ADMIN):
        raise Problem(403, f"only an admin may override the blast-radius policy ({p.name} is not one)")


@router.post(
    "/incidents/{incident_id}/decisions", tags=["incidents"], response_model=DecisionResult,
    responses={403: {"description": "not the IC"}, 409: {"description": "already decided"}},
)
async def decide(body: DecisionBody, incident_id: IdPath, p: Commander,
                 c: TemporalClient, ctx: Context):
    _override_allowed([body], p)
    d = Decision(action_id=body.action_id, approve=body.approve, by=p.name, reason=body.reason, override=body.override)
    return await ctx.bounded(svc.decide(c, incident_id, d), p)

@router.post(
    "/incidents/{incident_id}/decisions/batch", tags=["incidents"], response_model=list[DecisionResult],
    responses={403: {"description": "not the IC"}, 409: {"description": "one of them already decided"}},
)
async def decide_many(body: DecisionsBody, incident_id: IdPath, p: Commander,
                      c: TemporalClient, ctx: Context):
    """Several decisions at once, all or none: approved actions run in the order given."""
    _override_allowed(body.decisions, p)
    batch = DecisionBatch(by=p.name, decisions=[
        BatchDecision(action_id=d.action_id, approve=d.approve, reason=d.reason, override=d.override)
        for d in body.decisions])
    return await ctx.bounded(svc.decide_many(c, incident_id, batch), p)

@router.post("/incidents/{incident_id}/service", tags=["incidents"],
             responses={403: {"description": "not the IC"}, 409: {"description": "refused by the incident"}})
async def name_service(body: ServiceBody, incident_id: IdPath, p: Commander, c: TemporalClient, ctx: Context) -> dict[str, str]:
    """Name the catalog service of an incident opened for one the catalog does not know."""
    msg = await ctx.bounded(svc.name_service(c, incident_id, ServiceNaming(service=body.service, by=p.name)), p)
    return {"incident_id": incident_id, "service": body.service, "message": msg}


@router.post("/incidents/{incident_id}/resolve", tags=["incidents"], response_model=ResolutionResult)
async def resolve(body: ResolveBody, incident_id: IdPath, p: Commander,
                  c: TemporalClient, ctx: Context):
    res = await ctx.bounded(svc.resolve(c, incident_id, Resolution(by=p.name, summary=body.summary, force=body.force,
                                                                     public_summary=body.public_summary)), p)
    if not res.resolved:
        raise Problem(409, res.message)
    return res

@router.post("/incidents/{incident_id}/commander", status_code=202, tags=["incidents"], response_model=Accepted)
async def assign(body: CommanderBody, incident_id: IdPath, p: Commander,
                 c: TemporalClient):
    with acting_as(p.identity):
        await svc.assign_commander(c, incident_id, CommanderAssignment(commander=body.commander, by=p.name))
    return Accepted(incident_id=incident_id, message=f"commander assignment sent: {body.commander}")

@router.post("/incidents/{incident_id}/escalate", status_code=202, tags=["incidents"], response_model=Accepted)
async def escalate(body: EscalateBody, incident_id: IdPath, p: Responder,
                   c: TemporalClient):
    with acting_as(p.identity):
        await svc.escalate(c, incident_id, Escalation(severity=body.severity, by=p.name, reason=body.reason))
    return Accepted(incident_id=incident_id, message=f"escalation sent: {body.severity.value}")

@router.post("/incidents/{incident_id}/notes", status_code=202, tags=["incidents"], response_model=Accepted)
async def add_note(body: NoteBody, incident_id: IdPath, p: Responder,
                   c: TemporalClient):
    with acting_as(p.identity):
        await svc.add_note(c, incident_id, Note(by=p.name, text=body.text))
    return Accepted(incident_id=incident_id, message="note added")
