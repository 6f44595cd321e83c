"""The blast-radius guard: one long-lived workflow per scope holds every target's lease and the
last hour's changes (domain.blast_radius decides). Steps reach it only through the worker's
activities (activities.blast_radius), never from a workflow: its ID comes from the worker's
config and task queue, which no history records. Durable: a worker or server restart keeps
every lease; continue-as-new carries them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.blast_radius import BlastRadiusActivities
    from domain.blast_radius import (
        GUARD_WORKFLOW,
        BlastRadiusConfig,
        GuardInput,
        GuardState,
        LeaseAnswer,
        LeaseDone,
        Mutation,
        MutationKind,
        decide,
        expire,
        grant,
        let_go,
        waits,
    )
    from domain.incident import Action, ActionState, TimelineKind

from workflows.approvals import settle
from workflows.timeline import CODEBLUE, Timeline

# past this many events the guard continues as new (each ask is a few events)
MAX_EVENTS = 2_000


def _admin_only(who: str, roles: list[str]) -> None:
    if "admin" not in roles:
        raise ValueError(f"refused: only CodeBlue's worker asks the blast-radius guard, not {who}")


@workflow.defn(name=GUARD_WORKFLOW)
class BlastRadiusGuard:
    def __init__(self) -> None:
        self.state = GuardState()
        self.policy = BlastRadiusConfig()
        self.refused: str | None = None

    @workflow.run
    async def run(self, inp: GuardInput) -> None:
        self.state, self.policy = inp.state, inp.policy
        if inp.start_refused:  # no proof: this run guards nothing and ends
            self.refused = inp.start_refused
            return
        info = workflow.info()
        await workflow.wait_condition(
            lambda: info.is_continue_as_new_suggested() or info.get_current_history_length() > MAX_EVENTS)
        await workflow.wait_condition(workflow.all_handlers_finished)
        expire(self.state, workflow.now().timestamp())
        workflow.continue_as_new(GuardInput(scope=inp.scope, policy=self.policy, state=self.state,
                                            requested_by=inp.requested_by, requested_roles=inp.requested_roles))

    def _decide(self, ask: Mutation, policy: BlastRadiusConfig) -> LeaseAnswer:
        now = workflow.now().timestamp()
        expire(self.state, now)
        return decide(self.state, ask, policy, now)

    @workflow.update
    async def acquire_target(self, ask: Mutation) -> LeaseAnswer:
        """Granted, refused by a rule, or (a held target, a full cap) waited for up to the
        policy's wait_seconds, then refused naming the holder."""
        if self.refused:
            return LeaseAnswer(granted=False, detail=f"this guard's start was refused: {self.refused}")
        policy = ask.policy or self.policy
        self.policy = policy  # the asking worker's config is the policy from now on
        started = workflow.now().timestamp()
        deadline = started + policy.wait_seconds
        answer = self._decide(ask, policy)
        first = answer
        while waits(answer) and workflow.now().timestamp() < deadline:
            now = workflow.now().timestamp()
            wake = min([deadline, *(lease.until for lease in self.state.leases.values())])
            try:
                await workflow.wait_condition(lambda: not waits(self._decide(ask, policy)), timeout=max(wake - now, 0.001))
            except TimeoutError:
                pass
            answer = self._decide(ask, policy)
        if answer.granted:
            grant(self.state, ask, policy, workflow.now().timestamp())
            if waits(first):  # it waited its turn: say for whom
                answer.detail = (f"granted after waiting {workflow.now().timestamp() - started:.0f} s: "
                                 f"{first.detail}; {answer.detail}".rstrip("; "))
        elif waits(answer):
            answer.detail += f" (waited {policy.wait_seconds} s)"
        return answer

    @acquire_target.validator
    def _acquire_from_the_worker(self, ask: Mutation) -> None:
        _admin_only(ask.by, ask.by_roles)

    @workflow.update
    def release_target(self, done: LeaseDone) -> bool:
        return let_go(self.state, done)

    @release_target.validator
    def _release_from_the_worker(self, done: LeaseDone) -> None:
        _admin_only(done.by, done.by_roles)

    @workflow.query
    def blast_radius(self) -> GuardState:
        return self.state


GUARD_CALL = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
                         maximum_attempts=5, non_retryable_error_types=["GuardTaken"])


async def acquire(ask: Mutation, wait_seconds: int) -> LeaseAnswer:
    """A step's ask, from its workflow (the activity finds the guard)."""
    return await workflow.execute_activity_method(
        BlastRadiusActivities.acquire_target, ask,
        start_to_close_timeout=timedelta(seconds=wait_seconds + 60), heartbeat_timeout=timedelta(seconds=30),
        retry_policy=GUARD_CALL, summary=f"blast radius: {ask.kind.value} {ask.target}")


async def release(ask: Mutation, changed: bool = True) -> None:
    await workflow.execute_activity_method(
        BlastRadiusActivities.release_target, LeaseDone(target=ask.target, holder=ask.holder, changed=changed),
        start_to_close_timeout=timedelta(seconds=60), retry_policy=GUARD_CALL,
        summary=f"blast radius: let go of {ask.target}")


def ask_for(act: Action, incident_id: str, kind: MutationKind, target: str, replicas: int | None = None) -> Mutation:
    """An approved action's ask, with the admin override its approval carried."""
    return Mutation(kind=kind, target=target, incident_id=incident_id, step=act.id, replicas=replicas,
                    override=act.override, override_by=act.override_by)


async def take(tl: Timeline, act: Action, ask: Mutation, wait_seconds: int) -> bool:
    """The step's lease, asked for it: True, the step may act (what it waited for, or the
    admin override it ran under, is on the timeline); False, it was withdrawn naming the rule
    and must not act."""
    answer = await acquire(ask, wait_seconds)
    act.blast_radius_rule = answer.rule.value if answer.rule else None
    if not answer.granted:
        why = f"{act.blast_radius_rule or 'blast radius'}: {answer.detail}"
        settle(act, ActionState.SUPERSEDED, f"withdrawn by the blast-radius policy ({why})")
        tl.log(CODEBLUE, f"Not run {act.id}: the blast-radius policy", why, kind=TimelineKind.SUPERSEDED)
        return False
    if answer.overridden:
        tl.log(CODEBLUE, f"Blast-radius rule {act.blast_radius_rule} overridden for {act.id}", answer.detail,
               kind=TimelineKind.EXECUTING)
    elif answer.detail:  # it waited for another incident's step on the same target
        tl.log(CODEBLUE, f"Waited for {ask.target} before {act.id}", answer.detail, kind=TimelineKind.EXECUTING)
    return True


@asynccontextmanager
async def leased(tl: Timeline, act: Action, ask: Mutation, wait_seconds: int) -> AsyncIterator[bool]:
    """`async with leased(...) as ok:` the body acts only if `ok` (the step holds its target's
    lease); the lease is let go of however the body ends, and a step withdrawn before it
    changed anything (SUPERSEDED) is not counted against the hourly rate."""
    ok = await take(tl, act, ask, wait_seconds)
    try:
        yield ok
    finally:
        if ok:
            await release(ask, changed=act.state != ActionState.SUPERSEDED)
