"""Incidents for the benchmarks: a P0's input, opening many and waiting until each waits for
the IC, asking one until a condition holds, and terminating them afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.incident import IncidentInput, IncidentReport
from domain.severity import Severity
from starters import service
from workflows.incident_response import IncidentResponseWorkflow

TRANSIENT = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.UNAVAILABLE)


async def wait_for(client: Client, wid: str, pred, timeout: float = 60, poll: float = 0.005) -> IncidentReport:
    h = client.get_workflow_handle(wid)
    end = time.monotonic() + timeout
    while True:
        try:
            rep: IncidentReport | None = await h.query(IncidentResponseWorkflow.status)
        except RPCError as e:
            # a worker busy starting a thousand incidents answers late, and the server closes a
            # connection past its age (an h2 error on a call in flight): not yet, ask again
            if e.status not in TRANSIENT and "Timeout expired" not in str(e):
                raise
            rep = None
        if rep is not None and pred(rep):
            return rep
        if time.monotonic() > end:
            raise TimeoutError(f"{wid}: condition not reached")
        await asyncio.sleep(poll)


def p0(title: str = "bench") -> IncidentInput:
    return IncidentInput(
        incident_id=f"BENCH-{uuid.uuid4().hex[:10]}", title=title, severity=Severity.P0, commander="ic", requested_by="bench"
    )


# 1 ------------------------------------------------------------------ time to diagnostics
async def open_incidents(client: Client, tq: str, n: int, concurrency: int = 50) -> list[str]:
    ids: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            inp = p0()
            await service.start_incident(client, inp, tq)
            ids.append(inp.incident_id)

    await asyncio.gather(*(one() for _ in range(n)))
    # every incident is waiting for the IC; asked a few times a second, since every status query
    # is a task for the worker and the server (at 200 a second, it halved the rate they opened at)
    for wid in ids:
        await wait_for(client, wid, lambda r: bool(r.actions), timeout=300, poll=0.25)
    return ids


async def terminate_all(client: Client, ids: list[str]) -> None:
    for wid in ids:
        try:
            await client.get_workflow_handle(wid).terminate("bench done")
        except Exception:  # noqa: BLE001 - already closed
            pass
