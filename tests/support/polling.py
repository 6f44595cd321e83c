"""The one way a test waits for something: `until`, a poll that backs off."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from domain.incident import IncidentReport
from workflows.incident_response import IncidentResponseWorkflow

T = TypeVar("T")
R = TypeVar("R")

# What a server says while it moves a workflow off a killed worker, or under load: asked again.
TRANSIENT = (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE)
QUERY_RPC_TIMEOUT = timedelta(seconds=30)

Check = Callable[[T], "bool | Awaitable[bool]"]


@overload
async def until(
    source: WorkflowHandle, pred: Check[IncidentReport], what: str = ..., timeout: float = ..., poll: float = ...,
    query: None = None, max_poll: float = ..., retry: tuple[type[BaseException], ...] = ...,
) -> IncidentReport: ...


@overload
async def until(
    source: WorkflowHandle, pred: Check[R], what: str = ..., timeout: float = ..., poll: float = ..., *,
    query: Callable[[Any], R], max_poll: float = ..., retry: tuple[type[BaseException], ...] = ...,
) -> R: ...


@overload
async def until(
    source: Callable[[], Awaitable[T]], pred: Check[T] | None = None, what: str = ..., timeout: float = ...,
    poll: float = ..., query: None = None, max_poll: float = ..., retry: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def until(
    source: Callable[[], T], pred: Check[T] | None = None, what: str = ..., timeout: float = ...,
    poll: float = ..., query: None = None, max_poll: float = ..., retry: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def until(
    source: Any, pred: Any = None, what: str = "the condition", timeout: float = 20, poll: float = 0.05,
    query: Any = None, max_poll: float = 0.4, retry: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll `source` until `pred` holds of what it gives, and return that value.

    `source` is a workflow handle, whose status query is asked (the incident's unless `query`
    names a playbook's, a restore's or the post-incident's `progress`), or a callable with no
    argument, sync or async (its result; without `pred`, until it is truthy). `pred` may be sync
    or async too. Real time: the time-skipping server's clock does not move meanwhile.

    The interval starts at `poll` and grows by half to `max_poll`: what comes at once is seen at
    once, and a wait of many seconds (a heartbeat timeout) costs a few dozen probes, not
    hundreds, each a task for the server and the worker. A probe that costs a process (kubectl,
    the CLI) or a scrape passes a longer `poll`. A query that reaches a killed worker's sticky
    queue fails until the server moves the workflow on: retried, as any client would; so is any
    exception named in `retry` (a server not listening yet); so is a workflow not found (a child
    its parent has not started yet). Past
    `timeout` seconds: AssertionError naming `what` and the last value seen.
    """
    handle: WorkflowHandle | None = None
    if isinstance(source, WorkflowHandle):
        handle, status = source, query or IncidentResponseWorkflow.status

        async def probe() -> Any:
            # a query lost on its way (a busy time-skipping server) is asked again, never awaited forever
            return await handle.query(status, rpc_timeout=QUERY_RPC_TIMEOUT)
    else:
        probe = source
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    max_poll = max(poll, max_poll)
    last: Any = None
    catch: tuple[type[BaseException], ...] = (RPCError, *retry)
    while True:
        try:
            value = probe()
            if inspect.isawaitable(value):
                try:  # a probe that never answers fails the wait at its timeout instead of hanging the test
                    async with asyncio.timeout(max(end - loop.time(), 1.0)):
                        value = await value
                except TimeoutError:
                    raise AssertionError(f"timed out waiting for {what}: the probe did not answer{_seen(last)}") from None
            last = value
            ok = value if pred is None else pred(value)
            if inspect.isawaitable(ok):
                ok = await ok
        except catch as e:
            if isinstance(e, RPCError) and e.status in TRANSIENT and loop.time() <= end:
                await asyncio.sleep(0.2)  # asked again shortly, as any client would
                continue
            not_yet = isinstance(e, RPCError) and e.status == RPCStatusCode.NOT_FOUND and handle is not None
            if not (not_yet or isinstance(e, retry)):
                raise
            if loop.time() > end:
                raise AssertionError(f"timed out waiting for {what}: {e!r}") from e
        else:
            if ok:
                return value
            if loop.time() > end:
                raise AssertionError(f"timed out waiting for {what}{_seen(last)}")
        await asyncio.sleep(poll)
        poll = min(max_poll, poll * 1.5)


def _seen(value: Any) -> str:
    """The last value, as a failure shows it: a report's timeline (a model or its JSON), a text's
    tail, else its repr."""
    timeline = value.get("timeline") if isinstance(value, dict) else getattr(value, "timeline", None)
    if isinstance(timeline, list) and all(hasattr(e, "event") or isinstance(e, dict) for e in timeline):
        return f"; timeline: {[e.event if hasattr(e, 'event') else e.get('event') for e in timeline]}"
    text = value if isinstance(value, str) else repr(value)
    return f": {text[-3000:]}"
