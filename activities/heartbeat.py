"""Heartbeats on a timer while a long activity runs.

Temporal notices a dead worker only when heartbeats stop (write steps get a 15 s heartbeat
timeout). An activity that heartbeats per unit of work is silent while one unit takes long
(a selective SCAN over a big keyspace, a `helm --wait`, a slow health endpoint), times out
and runs again beside itself. `Heartbeater` heartbeats every `interval_seconds` of wall time
whatever the body is doing, with the latest progress it was given, so a retry can resume
from `resume_details()`. It needs the event loop free: blocking reads belong in a thread.
Outside an activity (unit tests, the CLI) it does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from temporalio import activity

# well inside the workflows' 15 s heartbeat timeout, which the SDK throttles to 80 % of
DEFAULT_INTERVAL_SECONDS = 3.0


class Heartbeater:
    """`async with Heartbeater(3.0, {"cursor": 0}) as hb: ... hb.update({...})`: one beat on
    entry, then one every interval until the body ends (or is cancelled)."""

    def __init__(self, interval_seconds: float = DEFAULT_INTERVAL_SECONDS, details: Any = None) -> None:
        if interval_seconds <= 0:
            raise ValueError("heartbeat interval must be positive")
        self.interval_seconds = interval_seconds
        self._details = details
        self._task: asyncio.Task[None] | None = None

    @property
    def details(self) -> Any:
        return self._details

    def update(self, details: Any) -> None:
        """Progress the next beat reports; sending is the timer's job."""
        self._details = details

    def beat(self) -> None:
        """Heartbeat now with the current details (a no-op outside an activity)."""
        if activity.in_activity():
            activity.heartbeat(*(() if self._details is None else (self._details,)))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            self.beat()

    async def __aenter__(self) -> Heartbeater:
        if activity.in_activity():
            self.beat()
            # the task copies this context, so activity.heartbeat() reaches this activity
            self._task = asyncio.create_task(self._run(), name="heartbeat")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait() neither raises the task's CancelledError nor swallows one aimed at us
            await asyncio.wait({task})


def resume_details() -> Mapping[str, Any] | None:
    """The mapping the previous attempt last heartbeated, if any (None outside an activity)."""
    if not activity.in_activity():
        return None
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], Mapping):
        return details[0]
    return None
