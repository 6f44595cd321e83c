"""The incident's proposals mirrored in its Slack channel, one message each.

Kept apart from the incident workflow: Slack is a view of the approval book, never a source
of truth, and a Slack failure is recorded and never touches the incident.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.slack import SlackActivities
    from domain.incident import Action, ActionState, TimelineKind
    from domain.slack import (
        MAX_PROPOSALS_PER_POST,
        SlackPostResult,
        SlackProposalBatch,
        SlackProposalRequest,
        SlackShown,
        SlackUpdateRequest,
    )
    from workflows.approvals import ApprovalBook
    from workflows.steps import NOTIFY_RETRY, A, Activity
    from workflows.timeline import CODEBLUE, Timeline, reason


class SlackSync:
    """One message per proposal (Approve / Reject buttons), kept in step with the action's
    state whoever decided it (CLI, API, Slack). Serialized in one task; its state (what each
    message shows) travels across continue-as-new in `shown` and `off`."""

    def __init__(
        self,
        incident_id: str,
        book: ApprovalBook,
        timeline: Callable[[], Timeline],
        severity: Callable[[], str],
        closed: Callable[[], bool],
    ) -> None:
        self.incident_id = incident_id
        self.book = book
        self.timeline = timeline  # the incident's, which a continued run replaces
        self.severity = severity  # as it is now (an escalation changes it)
        self.closed = closed
        # per action, the message ref and the state it shows (None: not posted / failed)
        self.shown: dict[str, SlackShown] = {}
        self.loop: asyncio.Task[None] | None = None
        self.off = False  # skipped (no bot token or channel) or a post was refused
        self.handing_over = False  # continue-as-new is near: finish the call in flight, start no other

    def start(self) -> None:
        if self.loop is None or self.loop.done():
            self.loop = asyncio.ensure_future(self._sync())

    def stop(self) -> None:
        """Before continue-as-new: the next run starts again from `shown`."""
        if self.loop and not self.loop.done():
            self.loop.cancel()

    async def hand_over(self) -> None:
        """Before continue-as-new: the call in flight completes (its ref travels in `shown`),
        no other starts."""
        self.handing_over = True
        if self.loop and not self.loop.done():
            await self.loop

    def resume(self) -> None:
        """The run goes on after all (something came in during the hand-over)."""
        self.handing_over = False
        self.start()

    async def finish(self) -> None:
        """The messages show the final states before the incident closes."""
        if self.loop and not self.loop.done():
            await self.loop

    def _request(self, act: Action) -> SlackProposalRequest:
        return SlackProposalRequest(
            incident_id=self.incident_id, action_id=act.id, kind=act.kind.value, reason=act.reason,
            severity=self.severity(), commander=self.book.commander, rank=act.rank, recommended=act.recommended,
            recommendation=act.recommendation, idempotency_key=f"{self.incident_id}:{act.id}:slack",
        )

    def _view(self, act: Action) -> tuple[str, str | None, str | None]:
        """What the action's message should show: state, by, detail."""
        st = act.state
        if st == ActionState.PROPOSED and act.approvals:
            return "proposed", act.approvals[-1], f"approved {len(act.approvals)}/{self.book.needed(act)}; needs a second person"
        if st == ActionState.APPROVED:
            return st.value, act.approved_by, None
        if st == ActionState.REJECTED:
            return st.value, act.decided_by, act.rejection_reason
        return st.value, None, act.result if st != ActionState.PROPOSED else None

    def _behind(self) -> list[Action]:
        if self.off:
            return []
        out = []
        for act in self.book.actions.values():
            shown = self.shown.get(act.id)
            if shown is None or (shown.ref is not None and shown.view != list(self._view(act))):
                out.append(act)
        return out

    async def _sync(self) -> None:
        while True:
            await workflow.wait_condition(lambda: self.handing_over or bool(self._behind()) or self.closed())
            behind = self._behind()
            if not behind or self.handing_over:
                return  # closed, and every message shows its final state; or the next run goes on
            # the round's new proposals in rank order (the recommended one first; unranked last)
            new = sorted((act for act in behind if act.id not in self.shown),
                         key=lambda a: (a.rank == 0, a.rank))[:MAX_PROPOSALS_PER_POST]
            if new:
                if await self._post(new):
                    return
                continue  # what changed meanwhile is seen on the next pass
            for act in behind:
                if self.handing_over:
                    return
                view = list(self._view(act))
                shown = self.shown.get(act.id)
                if shown is not None:
                    assert shown.ref is not None
                    state, by, detail = view
                    await self._call(SlackActivities.slack_update_proposal, SlackUpdateRequest(
                        proposal=self._request(act), ref=shown.ref, state=state, by=by, detail=detail,
                    ), f"Update {act.id} in Slack")
                    shown.view = view

    async def _post(self, acts: list[Action]) -> bool:
        """The round's new proposals, one message each, in one activity; True when Slack is
        not configured (nothing more is posted)."""
        views = [list(self._view(a)) for a in acts]
        names = ", ".join(a.id for a in acts[:5]) + (f" and {len(acts) - 5} more" if len(acts) > 5 else "")
        try:
            out = await workflow.execute_activity_method(
                SlackActivities.slack_post_proposals, SlackProposalBatch(requests=[self._request(a) for a in acts]),
                start_to_close_timeout=timedelta(seconds=30 + 5 * len(acts)), retry_policy=NOTIFY_RETRY,
                summary=f"Post {names} to Slack")
            # one per request; one missing counts as failed (never posted again: no duplicate)
            results: list[SlackPostResult | None] = [*out.results[:len(acts)], *[None] * (len(acts) - len(out.results))]
        except ActivityError as e:
            self.timeline().log(CODEBLUE, f"Post {names} to Slack failed", reason(e), kind=TimelineKind.FAILED)
            results = [None] * len(acts)
        for act, view, res in zip(acts, views, results, strict=False):
            self.shown[act.id] = SlackShown(ref=res.ref if res else None, view=view)
            if res is not None and res.skipped:
                self.off = True
                self.timeline().log(CODEBLUE, "Slack proposals skipped", res.detail, kind=TimelineKind.NOTIFICATION)
                return True
            if res is not None and not res.delivered:
                self.timeline().log(CODEBLUE, f"Post {act.id} to Slack failed", res.detail, kind=TimelineKind.FAILED)
        return False

    async def _call(self, activity: Activity[A, SlackPostResult], req: A, summary: str) -> SlackPostResult | None:
        try:
            return await workflow.execute_activity_method(
                activity, req, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY, summary=summary,
            )
        except ActivityError as e:
            self.timeline().log(CODEBLUE, f"{summary} failed", reason(e), kind=TimelineKind.FAILED)
            return None
