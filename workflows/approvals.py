"""The IC's approval gate, shared by every workflow that changes production.

A workflow keeps one `ApprovalBook`, proposes actions into it, and exposes thin handlers:
signals `approve`/`reject` (fire-and-forget; a refused one is logged as ignored) and an update
`decide` whose validator calls `problem()` so a refusal reaches the sender and writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from workflows import metrics
from workflows.timeline import Timeline

with workflow.unsafe.imports_passed_through():
    from domain.identity import person
    from domain.incident import Action, ActionState, Decision, DecisionBatch, DecisionResult, TimelineKind


def settle(act: Action, state: ActionState, result: str | None = None) -> None:
    """An approved action ran (or never will): its outcome, counted as it happens."""
    act.state = state
    if result is not None:
        act.result = result
    metrics.mitigation_finished(act)


class ApprovalBook:
    def __init__(self, timeline: Timeline, approvers: Callable[[], list[str]],
                 two_person: Callable[[], list[str]] = lambda: []) -> None:
        self.timeline = timeline
        self.commander: str | None = None
        self.approvers = approvers
        self.two_person = two_person
        self.actions: dict[str, Action] = {}
        self.closed_reason: str | None = None  # set when the workflow no longer takes decisions
        self.proposed_at: dict[str, float] = {}

    # -- who may decide -------------------------------------------------------------------
    def may_decide(self, who: str) -> bool:
        """`who` is a verified actor (worker.identity replaced the typed name)."""
        name = person(who)
        return name == person(self.commander) or name in self.approvers()

    def authority_problem(self, who: str) -> str | None:
        if self.closed_reason:
            return self.closed_reason
        if not self.commander:
            return "no incident commander is assigned; assign one first"
        if not self.may_decide(who):
            return f"{who} is not the incident commander ({self.commander}) or a configured approver"
        return None

    # -- proposals ------------------------------------------------------------------------
    def propose(self, act: Action, actor: str = "codeblue") -> Action:
        self.actions[act.id] = act
        self.proposed_at.setdefault(act.id, self.timeline.t())
        self.timeline.log(actor, f"Proposed {act.id} ({act.kind.value})", act.reason, kind=TimelineKind.PROPOSED)
        return act

    def pending(self) -> list[str]:
        return [a.id for a in self.actions.values() if a.state == ActionState.PROPOSED]

    def approved(self) -> list[Action]:
        return [a for a in self.actions.values() if a.state == ActionState.APPROVED]

    def all_decided(self) -> bool:
        return not self.pending()

    # -- decisions ------------------------------------------------------------------------
    def problem(self, d: Decision) -> str | None:
        p = self.authority_problem(d.by)
        if p:
            return p
        act = self.actions.get(d.action_id)
        if act is None:
            known = ", ".join(self.actions) or "none yet"
            return f"unknown action {d.action_id!r} (proposed: {known})"
        if act.state == ActionState.SUPERSEDED and not d.approve:
            return None  # withdrawn already: rejecting it needs no reason and changes nothing
        if act.state != ActionState.PROPOSED:
            return f"action {d.action_id!r} was already decided ({act.state.value})"
        if not d.approve and not (d.reason or "").strip():
            return "a rejection needs a reason"
        if d.override is not None and not d.approve:
            return "an override of the blast-radius policy goes with an approval"
        if d.override is not None and "admin" not in d.by_roles:
            return f"only an admin may override the blast-radius policy ({person(d.by)} is not one)"
        if d.approve and person(d.by) in {person(x) for x in act.approvals}:
            return f"{person(d.by)} already approved {act.id}: the two-person rule needs someone else"
        return None

    def needed(self, act: Action) -> int:
        return 2 if act.id in self.two_person() else 1

    def batch_problem(self, ds: list[Decision]) -> str | None:
        seen: set[str] = set()
        for d in ds:
            if d.action_id in seen:
                return f"action {d.action_id!r} appears twice in one decision"
            seen.add(d.action_id)
            p = self.problem(d)
            if p:
                return f"{d.action_id}: {p}"
        return None

    def apply(self, d: Decision) -> DecisionResult:
        act = self.actions[d.action_id]
        if act.state == ActionState.SUPERSEDED:
            return DecisionResult(action_id=act.id, state=act.state, message=f"{act.id} was already withdrawn (superseded)")
        if d.approve and len(act.approvals) + 1 < self.needed(act):
            act.approvals.append(d.by)
            n = f"{len(act.approvals)}/{self.needed(act)}"
            self.timeline.log(d.by, f"Approved {act.id} ({act.kind.value}) {n}",
                              f"two-person rule: waiting for a second authorized person. {d.reason or ''}".strip(), kind=TimelineKind.DECISION)
            return DecisionResult(action_id=act.id, state=act.state, message=f"{act.id} approved {n}; needs a second person")
        act.decided_by = d.by
        act.decided_at_seconds = self.timeline.t()
        if d.approve:
            act.state = ActionState.APPROVED
            act.approved_by = d.by if not act.approvals else ", ".join([*act.approvals, d.by])
            self.timeline.log(d.by, f"Approved {act.id} ({act.kind.value})", d.reason, kind=TimelineKind.DECISION)
            if d.override is not None:
                act.override, act.override_by = d.override, d.by
                self.timeline.log(d.by, f"Blast-radius override for {act.id}", d.override, kind=TimelineKind.DECISION)
        else:
            act.state = ActionState.REJECTED
            act.rejection_reason = d.reason
            self.timeline.log(d.by, f"Rejected {act.id} ({act.kind.value})", d.reason, kind=TimelineKind.DECISION)
        metrics.approval_decided(act, act.decided_at_seconds - self.proposed_at.get(act.id, act.decided_at_seconds))
        return DecisionResult(action_id=act.id, state=act.state, message=f"{act.id} {act.state.value}")

    def from_signal(self, d: Decision) -> bool:
        """A signal cannot answer its sender: a refused one is recorded as ignored."""
        p = self.problem(d)
        if p:
            verb = "approve" if d.approve else "reject"
            self.timeline.log(d.by, f"Ignored {verb} of {d.action_id}", p, kind=TimelineKind.IGNORED)
            return False
        self.apply(d)
        return True

    async def wait_with_reminders(
        self,
        still_waiting: Callable[[], bool],
        remind_after_seconds: int,
        escalate_after_seconds: int,
        remind: Callable[[list[str]], Awaitable[None]],
        escalate: Callable[[list[str]], Awaitable[None]],
        elapsed: float = 0.0,
        reminded: bool = False,
    ) -> None:
        """Remind the IC, then escalate; never decide for them. Returns when nothing waits.
        `elapsed`/`reminded`: how far an earlier run got, so the deadlines do not move."""
        if not reminded:
            try:
                if remind_after_seconds - elapsed <= 0:
                    raise TimeoutError
                await workflow.wait_condition(
                    lambda: not still_waiting(),
                    timeout=timedelta(seconds=remind_after_seconds - elapsed),
                    timeout_summary="remind IC",
                )
                return
            except TimeoutError:
                await remind(self.pending())
        try:
            await workflow.wait_condition(
                lambda: not still_waiting(),
                timeout=timedelta(seconds=max(escalate_after_seconds - max(remind_after_seconds, elapsed), 1)),
                timeout_summary="escalate waiting proposals",
            )
        except TimeoutError:
            await escalate(self.pending())


class ApprovalHandlers:
    """The IC's handlers, shared by every gated workflow: signals `approve`/`reject` and the
    update `decide` with its validator. A subclass sets `self.book` and may override
    `_decided()` to react (refresh details, wake a loop)."""

    book: ApprovalBook

    def _decided(self) -> None:
        return None

    def refused_command(self, handler: str, typed_by: str | None, problem: str) -> None:
        """A signal without a valid proof of identity (worker.identity): recorded, nothing changes."""
        self.book.timeline.refused(handler, typed_by, problem)

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Any other signal name: worker.identity refuses it before this runs (the SDK would
        otherwise keep it buffered in memory for a handler that never comes)."""

    @workflow.signal
    def approve(self, d: Decision) -> None:
        self.book.from_signal(d.model_copy(update={"approve": True}))
        self._decided()

    @workflow.signal
    def reject(self, d: Decision) -> None:
        self.book.from_signal(d.model_copy(update={"approve": False}))
        self._decided()

    @workflow.update
    def decide(self, d: Decision) -> DecisionResult:
        result = self.book.apply(d)
        self._decided()
        return result

    @decide.validator
    def _validate_decide(self, d: Decision) -> None:
        problem = self.book.problem(d)
        if problem:
            raise ApplicationError(problem, type="DecisionRejected")

    @workflow.update
    def decide_many(self, b: DecisionBatch) -> list[DecisionResult]:
        """`codeblue incident approve ID rollback scale`: all or nothing, in the order given."""
        results = [self.book.apply(d) for d in b.as_decisions()]
        self._decided()
        return results

    @decide_many.validator
    def _validate_decide_many(self, b: DecisionBatch) -> None:
        problem = self.book.batch_problem(b.as_decisions())
        if problem:
            raise ApplicationError(problem, type="DecisionRejected")
