"""The blast-radius policy: what incidents may change together, decided in one place.

Every mutating step asks the worker's guard (workflows.blast_radius) for its target's lease
before it acts and lets go of it after. The guard holds, for everything the workers of one
scope act on, who is changing what now and what was changed in the last hour, and answers
each ask with `decide`: one mutation of a target at a time (the second waits, then is told
who holds it), at most N mutations of a kind per target per rolling hour, a replica ceiling,
and a cap on mutations running at once. A refusal names its rule; an admin's override of a
rule (never of a held target) is granted and recorded with its reason.
"""

from __future__ import annotations

import re
from enum import Enum

from pydantic import BaseModel, Field

from domain.bounds import Name, Roles
from domain.identity import StartedBy

HOUR_SECONDS = 3600.0
# the guard's workflow ID: ':' is in no incident ID (domain.incident.INCIDENT_ID_RE), so no
# incident, playbook or typed ID can take it
GUARD_ID_PREFIX = "codeblue:blast-radius:"
GUARD_WORKFLOW = "BlastRadiusGuard"
# its updates: sent only by the worker's own activities (worker.identity.WORKER_HANDLERS)
GUARD_HANDLERS = frozenset({"acquire_target", "release_target"})


class MutationKind(str, Enum):
    ROLLBACK = "rollback"
    SCALE = "scale"
    RESTART = "restart"
    FLUSHALL = "flushall"
    DELETE_KEYS = "delete-keys"  # a pattern flush: leased, no hourly rate unless configured
    RESTORE = "restore"
    REDEPLOY = "redeploy"


class Rule(str, Enum):
    HELD = "one-mutation-per-target"
    PER_HOUR = "per-target-per-hour"
    REPLICAS = "replica-ceiling"
    CONCURRENT = "concurrent-mutations"


class BlastRadiusConfig(BaseModel):
    """`blast_radius:` in the worker's config."""

    model_config = {"extra": "forbid"}

    # per kind: at most this many mutations of one target in any rolling hour, across incidents
    per_hour: dict[MutationKind, int] = Field(default={
        MutationKind.ROLLBACK: 3, MutationKind.SCALE: 6, MutationKind.RESTART: 6,
        MutationKind.FLUSHALL: 2, MutationKind.RESTORE: 1, MutationKind.REDEPLOY: 2,
    }, max_length=len(MutationKind))
    # no deployment is scaled above this many replicas, whatever the proposal or the playbook says
    max_replicas: int = Field(default=30, ge=1, le=10_000)
    # mutating steps running at once across all incidents and targets
    max_concurrent: int = Field(default=3, ge=1, le=100)
    # how long a step waits for a target another incident holds (or a free slot), then is withdrawn
    wait_seconds: int = Field(default=300, ge=0, le=3600)
    # a lease not let go of within this long has lost its holder (a killed run): it expires
    hold_seconds: int = Field(default=3600, ge=60, le=86_400)
    # the workers that share one guard; unset: those polling the same task queue
    scope: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9._-]{1,64}$")


def guard_id(scope: str) -> str:
    return GUARD_ID_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", scope)[:64]


def release_target(namespace: str, release: str) -> str:
    return f"release/{namespace}/{release}"


def deployment_target(namespace: str, deployment: str) -> str:
    return f"deployment/{namespace}/{deployment}"


def cache_target(cluster_id: str) -> str:
    return f"cache/{cluster_id}"


def database_target(instance: str) -> str:
    return f"database/{instance}"


class Mutation(BaseModel):
    """One mutating step's ask. `holder` names the step (incident and step ID): an ask
    repeated by a retried activity is the same ask, granted once and counted once."""

    kind: MutationKind
    target: str = Field(min_length=1, max_length=300)
    incident_id: str = Field(min_length=1, max_length=200)
    step: str = Field(min_length=1, max_length=200)
    replicas: int | None = Field(default=None, ge=0)  # a scale's new count
    # an admin's reason to go past the hourly rate, the ceiling or the cap (never a held target);
    # set by the incident from a verified decision only
    override: str | None = Field(default=None, max_length=2000)
    override_by: str | None = Field(default=None, max_length=200)
    by: Name = "codeblue"  # replaced by the proof's actor (worker.identity)
    by_roles: Roles = []  # the proof's roles; the guard answers an admin's (the worker's) only
    # set by the worker's activity, over anything a workflow put there: its config's policy and
    # the asking run (the guard lets go of a lease whose run has closed)
    policy: BlastRadiusConfig | None = None
    workflow_id: Name = ""
    run_id: Name = ""

    @property
    def holder(self) -> str:
        return f"{self.incident_id}/{self.step}"


class LeaseDone(BaseModel):
    target: str = Field(min_length=1, max_length=300)
    holder: str = Field(min_length=1, max_length=401)
    # False: the step was refused before it changed anything (the world had moved), so it is
    # not counted against the hourly rate
    changed: bool = True
    by: Name = "codeblue"
    by_roles: Roles = []


class Lease(BaseModel):
    kind: MutationKind
    target: str
    holder: str
    since: float
    until: float
    workflow_id: str = ""
    run_id: str = ""


class Change(BaseModel):
    """A granted mutation, kept for an hour: what the hourly rates count."""

    kind: MutationKind
    target: str
    holder: str
    at: float


class LeaseAnswer(BaseModel):
    granted: bool
    rule: Rule | None = None  # the rule that refused it, or the one an override went past
    detail: str = ""
    holder: str | None = None  # who holds the target, when that is why
    holder_run: tuple[str, str] | None = None  # its workflow and run
    overridden: bool = False


class GuardState(BaseModel):
    """All the guard knows, carried across continue-as-new."""

    leases: dict[str, Lease] = {}  # target -> its lease
    changes: list[Change] = []  # the last hour's grants, oldest first


class GuardInput(StartedBy):
    scope: str
    policy: BlastRadiusConfig = BlastRadiusConfig()
    state: GuardState = GuardState()


def expire(state: GuardState, now: float) -> list[Lease]:
    """Drop the leases past their hold and the changes older than an hour; the expired leases."""
    gone = [lease for lease in state.leases.values() if lease.until <= now]
    for lease in gone:
        del state.leases[lease.target]
    state.changes = [c for c in state.changes if c.at > now - HOUR_SECONDS]
    return gone


def decide(state: GuardState, ask: Mutation, policy: BlastRadiusConfig, now: float) -> LeaseAnswer:
    """The policy on one ask, given what the guard holds now. No side effect: `grant` records."""
    held = state.leases.get(ask.target)
    if held is not None and held.holder == ask.holder:
        return LeaseAnswer(granted=True)  # the same step asking again (a retried activity)
    if held is not None:
        return LeaseAnswer(granted=False, rule=Rule.HELD, holder=held.holder, holder_run=(held.workflow_id, held.run_id),
                           detail=f"{ask.target} is being changed by {held.holder} ({held.kind.value})")
    problem: tuple[Rule, str] | None = None
    if ask.kind == MutationKind.SCALE and ask.replicas is not None and ask.replicas > policy.max_replicas:
        problem = Rule.REPLICAS, f"{ask.replicas} replicas is over the ceiling of {policy.max_replicas}"
    limit = policy.per_hour.get(ask.kind)
    if problem is None and limit is not None:
        done = [c for c in state.changes if c.target == ask.target and c.kind == ask.kind and c.at > now - HOUR_SECONDS]
        if len(done) >= limit:
            problem = Rule.PER_HOUR, (f"{ask.target} had {len(done)} {ask.kind.value}(s) in the last hour "
                                      f"(at most {limit}): last by {done[-1].holder}")
    if problem is None and len(state.leases) >= policy.max_concurrent:
        problem = Rule.CONCURRENT, (f"{len(state.leases)} mutations are running "
                                    f"(at most {policy.max_concurrent}): {', '.join(sorted(state.leases))}")
    if problem is None:
        return LeaseAnswer(granted=True)
    rule, why = problem
    if ask.override and rule != Rule.CONCURRENT:
        return LeaseAnswer(granted=True, rule=rule, overridden=True,
                           detail=f"{why}; overridden by {ask.override_by or 'an admin'}: {ask.override}")
    return LeaseAnswer(granted=False, rule=rule, detail=why)


def grant(state: GuardState, ask: Mutation, policy: BlastRadiusConfig, now: float) -> None:
    if ask.target in state.leases:  # a retried ask: granted and counted once
        return
    state.leases[ask.target] = Lease(kind=ask.kind, target=ask.target, holder=ask.holder, since=now,
                                     until=now + policy.hold_seconds, workflow_id=ask.workflow_id, run_id=ask.run_id)
    state.changes.append(Change(kind=ask.kind, target=ask.target, holder=ask.holder, at=now))


def let_go(state: GuardState, done: LeaseDone) -> bool:
    """The step is over: its lease goes (and its count, if it changed nothing). False: not its
    lease (let go of already by a retried release, or expired)."""
    lease = state.leases.get(done.target)
    if lease is None or lease.holder != done.holder:
        return False
    del state.leases[done.target]
    if not done.changed:
        state.changes = [c for c in state.changes if not (c.target == done.target and c.holder == done.holder)]
    return True


def waits(answer: LeaseAnswer) -> bool:
    """What a step waits out (another incident's lease, a full cap) rather than is refused for."""
    return not answer.granted and answer.rule in (Rule.HELD, Rule.CONCURRENT)
