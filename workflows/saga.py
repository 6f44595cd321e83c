"""Compensations registered before each step runs, undone newest first when a later step fails."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from temporalio import workflow

from workflows.approvals import settle
from workflows.timeline import CODEBLUE, Timeline, reason

with workflow.unsafe.imports_passed_through():
    from domain.incident import Action, ActionState


class Saga:
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.steps: list[tuple[Action, Callable[[], Awaitable[None]]]] = []

    def register(self, act: Action, undo: Callable[[], Awaitable[None]], description: str) -> None:
        act.compensation = description
        self.steps.append((act, undo))

    async def compensate(self) -> None:
        """Reverse order, shielded from cancellation; a failed undo is logged and the next runs."""
        for act, undo in reversed(self.steps):
            try:
                await asyncio.shield(asyncio.ensure_future(undo()))
                if act.state == ActionState.FAILED:
                    act.result = f"{act.result}; compensated"
                else:
                    settle(act, ActionState.COMPENSATED)
                self.timeline.log(CODEBLUE, f"Compensated {act.id}", act.compensation)
            except Exception as e:  # noqa: BLE001 - recorded, the next undo still runs
                self.timeline.log(CODEBLUE, f"Compensation of {act.id} failed", reason(e))
        self.steps.clear()
