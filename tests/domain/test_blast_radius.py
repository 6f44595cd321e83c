"""The blast-radius policy on its own (domain.blast_radius): what one ask is answered, given
what the guard holds."""

from __future__ import annotations

from domain.blast_radius import (
    HOUR_SECONDS,
    BlastRadiusConfig,
    GuardState,
    Mutation,
    MutationKind,
    Rule,
    decide,
    expire,
    grant,
    waits,
)

POLICY = BlastRadiusConfig(max_concurrent=2, max_replicas=10,
                           per_hour={MutationKind.ROLLBACK: 2, MutationKind.SCALE: 5})
RELEASE = "release/healthcare-prod/healthcare-platform"


def _ask(incident: str, step: str = "rollback", kind: MutationKind = MutationKind.ROLLBACK, target: str = RELEASE,
         **kw) -> Mutation:
    return Mutation(kind=kind, target=target, incident_id=incident, step=step, **kw)


def _take(state: GuardState, ask: Mutation, now: float) -> None:
    assert decide(state, ask, POLICY, now).granted
    grant(state, ask, POLICY, now)


def test_a_held_target_waits_and_names_its_holder_and_the_same_step_asking_again_is_granted_once():
    s = GuardState()
    a = _ask("INC-A")
    _take(s, a, 0)
    other = decide(s, _ask("INC-B"), POLICY, 1)
    assert not other.granted and other.rule == Rule.HELD and other.holder == "INC-A/rollback" and waits(other)
    assert "INC-A/rollback" in other.detail
    again = decide(s, a, POLICY, 2)  # the activity retried
    assert again.granted
    grant(s, a, POLICY, 2)
    assert len(s.changes) == 1  # counted once


def test_at_most_n_of_a_kind_per_target_per_rolling_hour_then_refused_naming_the_rule():
    s = GuardState()
    for n, incident in enumerate(("INC-A", "INC-B")):
        _take(s, _ask(incident), n * 60.0)
        del s.leases[RELEASE]  # each let go after its step
    third = decide(s, _ask("INC-C"), POLICY, 600)
    assert not third.granted and third.rule == Rule.PER_HOUR and not waits(third)
    assert "2 rollback(s) in the last hour (at most 2)" in third.detail and "INC-B/rollback" in third.detail
    # another kind, or another target, is not counted against it
    assert decide(s, _ask("INC-C", kind=MutationKind.SCALE, replicas=4), POLICY, 600).granted
    assert decide(s, _ask("INC-C", target="release/healthcare-prod/patient-portal"), POLICY, 600).granted
    expire(s, HOUR_SECONDS + 1)  # the first one is over an hour old
    assert decide(s, _ask("INC-C"), POLICY, HOUR_SECONDS + 1).granted


def test_the_replica_ceiling_refuses_a_scale_above_it_and_an_admin_override_goes_past_it_with_its_reason():
    s = GuardState()
    ask = _ask("INC-A", step="scale", kind=MutationKind.SCALE, target="deployment/healthcare-prod/api-gateway", replicas=11)
    no = decide(s, ask, POLICY, 0)
    assert not no.granted and no.rule == Rule.REPLICAS and "11 replicas is over the ceiling of 10" in no.detail
    over = ask.model_copy(update={"override": "Black Friday load, capacity checked", "override_by": "root (admin)"})
    yes = decide(s, over, POLICY, 0)
    assert yes.granted and yes.overridden and yes.rule == Rule.REPLICAS
    assert "overridden by root (admin): Black Friday load, capacity checked" in yes.detail


def test_the_concurrency_cap_waits_and_no_override_goes_past_a_held_target_or_the_cap():
    s = GuardState()
    _take(s, _ask("INC-A", target="release/a/a"), 0)
    _take(s, _ask("INC-B", target="release/b/b"), 0)
    full = decide(s, _ask("INC-C", target="release/c/c", override="urgent", override_by="root"), POLICY, 1)
    assert not full.granted and full.rule == Rule.CONCURRENT and waits(full)
    held = decide(s, _ask("INC-C", target="release/a/a", override="urgent", override_by="root"), POLICY, 1)
    assert not held.granted and held.rule == Rule.HELD


def test_a_lease_past_its_hold_expires():
    s = GuardState()
    _take(s, _ask("INC-A"), 0)
    gone = expire(s, POLICY.hold_seconds + 1)
    assert [g.holder for g in gone] == ["INC-A/rollback"] and not s.leases
    assert decide(s, _ask("INC-B"), POLICY, POLICY.hold_seconds + 1).granted
