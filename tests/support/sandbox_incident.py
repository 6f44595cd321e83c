"""Driving a P0 on the bad-deploy sandbox from tests that run real `codeblue worker` processes."""

from __future__ import annotations

import uuid

from temporalio.client import Client, WorkflowHandle

from domain.incident import Decision, IncidentInput, Resolution
from domain.severity import Severity
from starters import service
from tests.support.polling import until


async def start_p0(client: Client, tq: str, prefix: str) -> tuple[str, WorkflowHandle]:
    iid = f"{prefix}-{uuid.uuid4().hex[:6]}"
    h = await service.start_incident(
        client,
        IncidentInput(incident_id=iid, title="gateway down", severity=Severity.P0, commander="ic", requested_by="test"),
        tq,
    )
    return iid, h


async def approve_only(client: Client, h: WorkflowHandle, action: str = "rollback") -> None:
    """The IC approves one proposal and rejects the rest, so mitigation starts."""
    rep = await until(h, lambda r: bool(r.actions), "proposals", timeout=60)
    for a in rep.actions:
        ok = a.id == action
        await service.decide(client, h.id, Decision(action_id=a.id, approve=ok, by="ic", reason=None if ok else "no"))


async def resolve_when_healthy(client: Client, iid: str, timeout: float = 45) -> None:
    """The sandbox needs a moment to roll pods; resolve refuses until health verifies: asked
    again a second apart (each ask runs a health check), about 30 times."""
    await until(lambda: service.resolve(client, iid, Resolution(by="ic", summary="rolled back")), lambda res: res.resolved,
                f"{iid} verified healthy", timeout=timeout, poll=1)
