"""Compensations registered before each step runs, undone newest first when a later step fails.

An undo is either a coroutine function (playbooks that finish within one run) or an `Undo`
record: plain data that the workflow runs through its own activity caller, so an incident
can carry its saga across continue-as-new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import workflow

from workflows.approvals import settle
from workflows.timeline import CODEBLUE, Timeline, reason

with workflow.unsafe.imports_passed_through():
    from domain.incident import Action, ActionState, TimelineKind, Undo

UndoFn = Callable[[], Awaitable[None]]


class Saga:
    def __init__(self, timeline: Timeline, run_undo: Callable[[Undo], Awaitable[None]] | None = None) -> None:
        self.timeline = timeline
        self.run_undo = run_undo
        self.steps: list[tuple[Action, UndoFn | Undo]] = []

    def register(self, act: Action, undo: UndoFn | Undo, description: str) -> None:
        act.compensation = description
        self.steps.append((act, undo))

    def forget(self, act: Action) -> None:
        """The step changed nothing (its precondition refused it): nothing to undo."""
        self.steps = [(a, u) for a, u in self.steps if a is not act]

    def records(self) -> list[Undo]:
        """The saga as data, for continue-as-new (only `Undo` records can travel)."""
        return [u for _, u in self.steps if isinstance(u, Undo)]

    def _call(self, undo: UndoFn | Undo) -> Awaitable[None]:
        if isinstance(undo, Undo):
            assert self.run_undo is not None, "a saga with Undo records needs run_undo"
            return self.run_undo(undo)
        return undo()

    async def compensate(self) -> None:
        """Reverse order, every undo to its end: a cancel that arrives meanwhile is held until
        the last one ran, then re-raised. A failed undo is logged and the next runs."""
        cancelled = False
        for act, undo in reversed(self.steps):
            task = asyncio.ensure_future(self._call(undo))
            while not task.done():
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    if task.done() and task.cancelled():
                        break
                    cancelled = True  # the workflow was cancelled: finish undoing first
                except Exception:  # noqa: BLE001 - read from the task below
                    break
            try:
                task.result()
                if act.state == ActionState.FAILED:
                    act.result = f"{act.result}; compensated"
                else:
                    settle(act, ActionState.COMPENSATED)
                self.timeline.log(CODEBLUE, f"Compensated {act.id}", act.compensation, kind=TimelineKind.COMPENSATION)
            except asyncio.CancelledError:
                self.timeline.log(CODEBLUE, f"Compensation of {act.id} failed", "cancelled", kind=TimelineKind.COMPENSATION)
            except Exception as e:  # noqa: BLE001 - recorded, the next undo still runs
                self.timeline.log(CODEBLUE, f"Compensation of {act.id} failed", reason(e), kind=TimelineKind.COMPENSATION)
        self.steps.clear()
        if cancelled:
            raise asyncio.CancelledError
