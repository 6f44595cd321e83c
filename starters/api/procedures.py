"""The runbook's procedures over HTTP: playbooks, recovery, restore and post-incident work, so
every CLI command can go through the API (the token's principal, signed by the API).

Starting one needs the commander role here; the worker then takes the incident's own IC and
refuses anyone who is not that IC, an approver or an admin (workflows.playbook)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from temporalio.client import Client

from domain.database_restore import CancelRestore, DatabaseRestoreInput, restore_workflow_id
from domain.db_connections import DbConnectionsInput, db_connections_workflow_id
from domain.high_memory import MemoryInput, MemoryResolution, memory_workflow_id
from domain.incident import INCIDENT_ID_PATTERN
from domain.post_incident import CloseActionItem, NewActionItem, PostmortemHeld
from domain.redis_cache import CacheInput, FlushConfirmation, cache_workflow_id
from domain.service_recovery import RecoveryInput, recovery_workflow_id
from domain.severity import Severity
from starters import database_restore
from starters import post_incident as pm
from starters import service as svc
from starters.api.auth import ADMIN, Principal
from starters.api.deps import Commander, Context, IdPath, Responder, TemporalClient
from starters.api.problems import Problem
from starters.db_connections import start_db_connections
from starters.high_memory import resolve_memory, start_memory_playbook
from starters.redis_cache import confirm_flush, start_cache_playbook
from starters.service_recovery import start_recovery

ID_PATTERN = INCIDENT_ID_PATTERN
Kind = Literal["cache", "memory", "db-connections", "redeploy", "db-restore", "postmortem"]


class _Body(BaseModel):
    model_config = {"extra": "forbid"}


class ProcedureBody(_Body):
    """What a starter may choose; targets (release, chart, instance) are the worker's config."""

    incident_id: str = Field(pattern=ID_PATTERN)
    commander: str | None = Field(default=None, max_length=64)  # only when no CodeBlue incident has this ID
    severity: Severity | None = None
    pattern: str | None = Field(default=None, max_length=200)  # cache: a pattern-scoped flush
    max_connection_errors: int | None = Field(default=None, ge=0)  # db-connections
    tag: str | None = Field(default=None, max_length=128)  # redeploy: an image tag (default: last known-good)
    snapshot: str | None = Field(default=None, max_length=255)  # db-restore
    target: str | None = Field(default=None, max_length=63)  # db-restore: the new instance


class ProcedureStarted(BaseModel):
    workflow_id: str
    ui_url: str


class FlushBody(_Body):
    cluster_name: str = Field(min_length=1, max_length=255)


class MemoryBody(_Body):
    keep_scale: bool = False


class ReasonBody(_Body):
    reason: str = Field(min_length=1, max_length=2000)


class HeldBody(_Body):
    notes: str = Field(default="", max_length=4000)


class ItemBody(_Body):
    text: str = Field(min_length=1, max_length=500)
    owner: str = Field(min_length=1, max_length=100)
    due: date


class CloseBody(_Body):
    defer: bool = False
    reason: str | None = Field(default=None, max_length=2000)


def _input(kind: str, b: ProcedureBody, by: str) -> tuple[Any, Callable[[Client, Any, str], Awaitable[Any]], str]:
    common: dict[str, Any] = {"incident_id": b.incident_id, "requested_by": by, "commander": b.commander}
    if b.severity:
        common["severity"] = b.severity
    iid = b.incident_id
    if kind == "cache":
        return CacheInput(**common, pattern=b.pattern), start_cache_playbook, cache_workflow_id(iid)
    if kind == "memory":
        return MemoryInput(**common), start_memory_playbook, memory_workflow_id(iid)
    if kind == "db-connections":
        extra = {} if b.max_connection_errors is None else {"max_connection_errors": b.max_connection_errors}
        return DbConnectionsInput(**common, **extra), start_db_connections, db_connections_workflow_id(iid)
    if kind == "redeploy":
        return RecoveryInput(**common, target_tag=b.tag), start_recovery, recovery_workflow_id(iid)
    return (DatabaseRestoreInput(**common, snapshot=b.snapshot, target=b.target),
            database_restore.start_restore, restore_workflow_id(iid))


async def _authority_problem(c: Client, incident_id: str, p: Principal, approvers: list[str]) -> str | None:
    """The worker's rule, answered before anything starts: the incident's IC, an approver or an admin."""
    try:
        report = await svc.status(c, incident_id)
    except svc.CodeBlueError as e:
        if str(e).startswith("unknown incident"):
            # no CodeBlue incident: only an admin may start one (and names its IC)
            return None if p.has(ADMIN) else f"no incident {incident_id} exists: only an admin may start a procedure for it"
        raise
    if p.name == report.commander or p.name in approvers or p.has(ADMIN):
        return None
    return f"{p.name} is not the IC ({report.commander or 'unassigned'}) of {incident_id}, an approver or an admin"


router = APIRouter(tags=["procedures"])
WidPath = Annotated[str, Path(pattern=ID_PATTERN, description="A procedure's workflow ID, e.g. INC-1-cache")]
ItemPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,20}$")]


@router.post("/procedures/{kind}", status_code=201, response_model=ProcedureStarted,
        responses={403: {"description": "not a commander"}, 409: {"description": "already running"}})
async def start(kind: Kind, body: ProcedureBody, p: Commander,
                c: TemporalClient, ctx: Context):
    problem = await _authority_problem(c, body.incident_id, p, ctx.cfg.mitigation.approvers)
    if problem:
        raise Problem(403, problem)
    if kind == "postmortem":
        h = await ctx.bounded(pm.start(c, body.incident_id, ctx.temporal_settings.task_queue, body.commander), p)
        return ProcedureStarted(workflow_id=h.id, ui_url=ctx.ui_link(h.id))
    try:
        inp, run, wid = _input(kind, body, p.name)
    except ValueError as e:
        raise Problem(422, str(e).splitlines()[-1] if str(e) else "invalid procedure") from None
    h = await ctx.bounded(run(c, inp, ctx.temporal_settings.task_queue), p)
    return ProcedureStarted(workflow_id=h.id or wid, ui_url=ctx.ui_link(h.id or wid))

@router.post("/procedures/{workflow_id}/confirm-flush")
async def confirm(body: FlushBody, workflow_id: WidPath, p: Commander,
                  c: TemporalClient, ctx: Context) -> dict[str, str]:
    msg = await ctx.bounded(confirm_flush(c, workflow_id, FlushConfirmation(by=p.name, cluster_name=body.cluster_name)), p)
    return {"message": msg}

@router.post("/procedures/{workflow_id}/resolve-memory")
async def memory_done(body: MemoryBody, workflow_id: WidPath, p: Commander,
                      c: TemporalClient, ctx: Context) -> dict[str, str]:
    msg = await ctx.bounded(resolve_memory(c, workflow_id, MemoryResolution(by=p.name, keep_scale=body.keep_scale)), p)
    return {"message": msg}

@router.post("/incidents/{incident_id}/db-restore/cancel")
async def cancel(body: ReasonBody, incident_id: IdPath, p: Commander,
                 c: TemporalClient, ctx: Context) -> dict[str, str]:
    msg = await ctx.bounded(database_restore.cancel_restore(c, incident_id, CancelRestore(by=p.name, reason=body.reason)), p)
    return {"message": msg}

@router.post("/incidents/{incident_id}/postmortem/held")
async def held(body: HeldBody, incident_id: IdPath, p: Responder,
               c: TemporalClient, ctx: Context) -> dict[str, str]:
    return {"message": await ctx.bounded(pm.held(c, incident_id, PostmortemHeld(by=p.name, notes=body.notes)), p)}

@router.post("/incidents/{incident_id}/action-items", status_code=201)
async def add_item(body: ItemBody, incident_id: IdPath, p: Responder,
                   c: TemporalClient, ctx: Context) -> dict[str, Any]:
    item = await ctx.bounded(pm.add_item(c, incident_id, NewActionItem(text=body.text, owner=body.owner, due=body.due,
                                                                   by=p.name)), p)
    return item.model_dump(mode="json")

@router.post("/incidents/{incident_id}/action-items/{item_id}/close")
async def close_item(body: CloseBody, incident_id: IdPath, item_id: ItemPath,
                     p: Responder, c: TemporalClient, ctx: Context) -> dict[str, Any]:
    item = await ctx.bounded(pm.close_item(c, incident_id, CloseActionItem(item_id=item_id, by=p.name, defer=body.defer,
                                                                       reason=body.reason)), p)
    return item.model_dump(mode="json")
