"""The IC's minute: an approved action runs at once, the proposals the re-checked evidence
makes moot are withdrawn (no reminder, no page for them), several approvals in one command run
in order in the incident's one saga, and the proposals come ranked with a recommendation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.assessment import Diagnostics, Evidence, assess, propose, rank
from domain.cluster import (
    DeploymentsReport,
    DeploymentState,
    HelmHistory,
    HelmRevision,
    LogsReport,
    PodsReport,
    PodState,
)
from domain.config import CodeBlueConfig
from domain.incident import ActionState, BatchDecision, Decision, DecisionBatch, TimelineKind
from sandbox.memory_world import World
from starters import service
from tests.support.polling import until
from tests.support.workflows import action, entries, incident, kinds, proposed, skip, start, worker_for
from workflows.incident_response import IncidentResponseWorkflow


async def test_approving_only_the_recommended_rollback_runs_it_now_and_withdraws_the_rest(skipping_env):
    env, world = skipping_env, World()
    async with worker_for(env, world) as tq:
        h = await start(env, world, incident(), tq)
        rep = await until(h, proposed, "proposals")
        best = next(a for a in rep.actions if a.recommended)
        assert best.id == "rollback" and best.rank == 1 and "12 min before the onset" in (best.recommendation or "")
        assert sorted(a.rank for a in rep.actions) == list(range(1, len(rep.actions) + 1))
        await service.decide(env.client, h.id, Decision(action_id="rollback", approve=True, by="alice"))
        rep = await until(h, lambda r: bool(entries(r, TimelineKind.SUPERSEDED)), "the rest withdrawn")
        # no timer, no other decision in between: it ran in the task that applied the approval
        (approved,), (executing,) = entries(rep, TimelineKind.DECISION), entries(rep, TimelineKind.EXECUTING)
        assert approved.actor == "alice" and executing.at_seconds == approved.at_seconds
        states = {a.id: a.state for a in rep.actions}
        assert states.pop("rollback") == ActionState.EXECUTED
        assert set(states.values()) == {ActionState.SUPERSEDED}
        assert world.effects == ["rollback 12->11"]
        # nobody is reminded or paged about proposals that no longer wait
        await skip(env, 12)
        await h.query(IncidentResponseWorkflow.status)
        assert world.pages_to("commander") == [] and world.pages_to("engineering_manager") == []
        # a superseded proposal can be turned down without a reason; it stays withdrawn
        res = await service.decide(env.client, h.id, Decision(action_id="scale", approve=False, by="alice"))
        assert res.state == ActionState.SUPERSEDED
        # the incident channel: one message per proposal, recommendation included, each updated in place
        posts = {p.action_id: p for p in world.slack_posts}
        assert sorted(posts) == sorted(a.id for a in rep.actions) and len(world.slack_posts) == len(posts)
        assert posts["rollback"].recommended and posts["rollback"].recommendation == best.recommendation
        shown: dict[str, list[tuple[str, str | None]]] = {}
        for u in world.slack_updates:
            shown.setdefault(u.proposal.action_id, []).append((u.state, u.by))
        # the message follows the action; a state that lasted less than one Slack round trip
        # (approved, while the last post was in flight) is folded into the next: never out of order
        assert shown["rollback"][-1] == ("executed", None), shown
        assert shown["rollback"] in ([("approved", "alice"), ("executed", None)], [("executed", None)]), shown
        assert all(v == [("superseded", None)] for k, v in shown.items() if k != "rollback"), shown
        await h.terminate()


async def test_two_approvals_in_one_command_run_in_order_and_a_failure_of_the_second_unwinds_the_first(skipping_env):
    env, world = skipping_env, World(broken={"scale_deployment"})
    async with worker_for(env, world) as tq:
        h = await start(env, world, incident(), tq)
        await until(h, proposed, "proposals")
        # all or none: a batch with one bad decision changes nothing
        try:
            await service.decide_many(env.client, h.id, DecisionBatch(by="alice", decisions=[
                BatchDecision(action_id="rollback", approve=True), BatchDecision(action_id="nuke", approve=True)]))
            raise AssertionError("a batch with an unknown action was accepted")
        except service.CodeBlueError as e:
            assert "nuke" in str(e)
        assert all(a.state == ActionState.PROPOSED for a in (await h.query(IncidentResponseWorkflow.status)).actions) and world.effects == []
        results = await service.decide_many(env.client, h.id, DecisionBatch(by="alice", decisions=[
            BatchDecision(action_id="rollback", approve=True), BatchDecision(action_id="scale", approve=True)]))
        assert [r.state for r in results] == [ActionState.APPROVED, ActionState.APPROVED]
        rep = await until(h, lambda r: action(r, "rollback").state == ActionState.COMPENSATED, "compensation")
        steps = (TimelineKind.EXECUTED, TimelineKind.FAILED, TimelineKind.COMPENSATION)
        assert [k for k in kinds(rep) if k in steps][:3] == list(steps)  # rollback ran, scale failed, then the undo
        assert action(rep, "scale").state == ActionState.FAILED
        assert world.effects == ["rollback 12->11", "rollback 13->12"]
        await h.terminate()


def _diag(*, crash: bool = False, oom: bool = False, conn: int = 0, cache: int = 0) -> Diagnostics:
    pods = [PodState(name=f"api-gateway-{i}", phase="Running", ready=not (crash or oom),
                     waiting_reason="CrashLoopBackOff" if crash else None, restarts=4 if (crash or oom) else 0,
                     last_termination_reason="OOMKilled" if oom else None) for i in range(3)]
    return Diagnostics(pods=PodsReport(namespace="healthcare-prod", pods=pods),
                       logs=LogsReport(deployment="api-gateway", lines_scanned=100, error_counts={"connection": conn, "cache": cache}))


def _evidence(deployed_minutes_ago: float | None) -> Evidence:
    now = datetime.now(UTC)
    revs = [HelmRevision(revision=11, updated=(now - timedelta(days=3)).isoformat(), status="superseded", chart="c-1.4")]
    if deployed_minutes_ago is not None:
        revs.append(HelmRevision(revision=12, updated=(now - timedelta(minutes=deployed_minutes_ago)).isoformat(),
                                 status="deployed", chart="c-1.5"))
    else:
        revs[0] = revs[0].model_copy(update={"status": "deployed"})
    return Evidence(
        deployments=DeploymentsReport(namespace="healthcare-prod", deployments=[
            DeploymentState(name="api-gateway", desired=3, ready=0, available=0, unavailable=3)]),
        helm=HelmHistory(release="healthcare-platform", revisions=revs),
    )


def _recommended(diag: Diagnostics, ev: Evidence) -> str:
    cfg = CodeBlueConfig()
    a = assess(diag, ev, cfg, datetime.now(UTC))
    ranked = rank(a, propose(a, cfg))
    assert [x.recommended for x in ranked].count(True) == 1
    return ranked[0].id


def test_each_scenarios_recommendation_is_the_move_its_drill_makes():
    # bad-deploy: revision 12 went out 12 minutes before the onset and crash-loops
    assert _recommended(_diag(crash=True, conn=200), _evidence(12)) == "rollback"
    # db-connections: connection errors, no deploy in the window
    assert _recommended(_diag(conn=36), _evidence(None)) == "db-connections-playbook"
    # memory-leak: OOMKilled pods, nothing deployed lately
    assert _recommended(_diag(oom=True), _evidence(None)) == "memory-playbook"
    # cache-poisoned: Redis errors in the logs
    assert _recommended(_diag(cache=40), _evidence(None)) == "cache-playbook"
    # a deploy and connection errors: the deploy is the likelier cause
    assert _recommended(_diag(conn=50), _evidence(12)) == "rollback"


async def test_the_proposals_go_to_slack_in_one_round_and_a_refused_message_is_on_the_timeline(skipping_env):
    env, world = skipping_env, World(slack_refused={"scale"})
    async with worker_for(env, world) as tq:
        h = await start(env, world, incident(), tq)
        rep = await until(h, proposed, "proposals")
        rep = await until(h, lambda r: any(e.event == "Post scale to Slack failed" for e in r.timeline), "the refusal")
        # one activity for the round, in rank order; the refused message is not posted again
        assert world.slack_rounds == [[a.id for a in sorted(rep.actions, key=lambda a: a.rank)]], world.slack_rounds
        (failed,) = [e for e in rep.timeline if e.event == "Post scale to Slack failed"]
        assert failed.kind == TimelineKind.FAILED and "restricted_action" in (failed.result or "")
        assert sorted(p.action_id for p in world.slack_posts) == sorted(a.id for a in rep.actions if a.id != "scale")
        await service.decide(env.client, h.id, Decision(action_id="scale", approve=False, by="alice", reason="not now"))
        await service.decide(env.client, h.id, Decision(action_id="restart", approve=False, by="alice", reason="not now"))
        await until(lambda: any(u.proposal.action_id == "restart" for u in world.slack_updates), None, "restart's update")
        assert len(world.slack_rounds) == 1 and not any(u.proposal.action_id == "scale" for u in world.slack_updates)
        await h.terminate()
