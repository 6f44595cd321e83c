"""Complete service recovery on the sandbox: helm stand-in, Kubernetes emulator, receiver."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from domain.incident import TimelineKind
from sandbox.memory_world import BREACHING_SLIS, HEALTHY_SLIS
from sandbox.scenario_service_recovery import HOTFIX_TAG, STABLE_TAG, gateway_tag
from sandbox.scenarios import GATEWAY, NAMESPACE
from tests.support.service_recovery import events, recovery_world, scripted_slis
from tests.support.workflows import entries, kinds_after
from worker.temporal import replayer
from workflows.service_recovery import ServiceRecoveryWorkflow


async def test_failed_verification_rolls_back_to_the_pre_upgrade_revision(skipping_env):
    async with recovery_world(skipping_env) as w:
        h = await w.start(tag=HOTFIX_TAG)
        proposal = await w.approve(h)
        act = proposal.actions[0]
        assert act.params["from_revision"] == 12 and act.params["to_tag"] == HOTFIX_TAG
        assert "revision 12 (v1.4.1) -> v1.5.1" in act.reason
        rep = await h.result()
        # executed, verified (and not good enough: it was undone), undone, verified again (passed: rep.verified)
        after = steps_after(rep, TimelineKind.EXECUTED)
        undo = after.index(TimelineKind.COMPENSATION)
        assert undo > 0 and set(after[:undo]) == {TimelineKind.VERIFICATION} and TimelineKind.VERIFICATION in after[undo:]
        assert rep.actions[0].state.value == "compensated"
        assert rep.actions[0].compensation == "helm rollback healthcare-platform 12 (the pre-upgrade revision)"
        assert rep.status == "rolled_back" and rep.verified is True
        assert rep.assessment["new_revision"] == 13 and rep.assessment["rollback_revision"] == 14
        # the cluster really is back on the pre-upgrade tag, and healthy
        assert gateway_tag(w.sandbox) == STABLE_TAG
        assert w.sandbox.cluster.gateway_healthy(NAMESPACE, GATEWAY)
        pages = [c.json for c in w.sandbox.receiver.effects("pagerduty")]
        assert any("recovery-failed" in (p.get("dedup_key") or "") for p in pages)
        # a failed tag is never recorded as known-good
        assert not any(e.event == "Recorded known-good" for e in rep.timeline)

        result = await replayer([ServiceRecoveryWorkflow]).replay_workflow(
            await h.fetch_history(), raise_on_replay_failure=False
        )
        assert result.replay_failure is None, result.replay_failure


async def test_known_good_from_history_skips_the_rolled_back_revision_then_is_recorded(skipping_env):
    async with recovery_world(skipping_env) as w:
        h = await w.start()  # no tag: the last known-good
        rep = await w.approve(h)
        reasoning = [e.result for e in rep.timeline if e.event == "Known-good reasoning"]
        assert (reasoning[0] or "").startswith("revision 12: chosen")
        assert rep.actions[0].params["to_tag"] == STABLE_TAG
        rep = await h.result()
        assert rep.status == "resolved" and rep.verified is True
        assert "Recorded known-good" in events(rep)

        # the next recovery uses CodeBlue's record, not the history
        h2 = await w.start()
        rep2 = await w.approve(h2)
        kg = next(e for e in rep2.timeline if e.event == "Last known-good tag")
        assert kg.result is not None and "verified healthy by CodeBlue" in kg.result and STABLE_TAG in kg.result
        assert "Known-good reasoning" not in events(rep2)
        await h2.result()


async def test_missing_release_is_a_clear_non_retryable_failure(skipping_env):
    async with recovery_world(skipping_env) as w:
        h = await w.start(release="no-such-release")  # an input may not name another release
        with pytest.raises(WorkflowFailureError) as ei:
            await h.result()
        refused = ei.value.cause
        assert isinstance(refused, ApplicationError)
        assert refused.type == "StartRefused" and "is not the worker's" in refused.message
        w.sandbox.config.helm.release = "no-such-release"  # the worker's config decides
        h = await w.start()
        with pytest.raises(WorkflowFailureError) as ei:
            await h.result()
        cause = ei.value.cause
        assert isinstance(cause, ApplicationError) and cause.non_retryable and cause.type == "NotFound"
        assert "release no-such-release not found in namespace healthcare-prod" in cause.message
        assert "release: not found" in cause.message  # helm's own words


async def test_missing_chart_is_a_clear_non_retryable_failure(skipping_env):
    async with recovery_world(skipping_env) as w:
        w.sandbox.config.helm.chart = "./no/such/chart"  # the worker's config decides
        h = await w.start()
        with pytest.raises(WorkflowFailureError) as ei:
            await h.result()
        cause = ei.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "ChartNotFound"
        assert "chart ./no/such/chart not found" in cause.message


async def test_upgrade_that_never_gets_ready_is_rolled_back(skipping_env):
    async with recovery_world(skipping_env) as w:
        w.sandbox.config.recovery.upgrade_timeout_seconds = 3  # helm --wait gives up quickly
        h = await w.start(tag="v1.5.0")  # crash-loops in the sandbox
        await w.approve(h)
        rep = await h.result()
        (failed,) = entries(rep, TimelineKind.FAILED)
        assert "timed out waiting for the condition" in (failed.result or "")
        # the redeploy failed, was undone, and the rollback re-verified (passed: rep.verified)
        assert steps_after(rep, TimelineKind.EXECUTING)[:4] == [TimelineKind.FAILED, TimelineKind.COMPENSATION, TimelineKind.COMPENSATION, TimelineKind.VERIFICATION]
        assert rep.actions[0].state.value == "failed" and rep.actions[0].result.endswith("; compensated")
        assert rep.status == "rolled_back" and rep.verified is True
        assert gateway_tag(w.sandbox) == STABLE_TAG


def steps_after(rep, kind: TimelineKind) -> list[TimelineKind]:
    """The timeline's kinds after `kind`, without notifications (the change events PagerDuty
    is sent for an upgrade or a rollback: tests/workflows/test_incident_notifications.py)."""
    return [k for k in kinds_after(rep, kind) if k != TimelineKind.NOTIFICATION]


def _following_the_gateway(sb) -> dict[str, float]:
    """SLIs as the sandbox gateway's metrics would read: bad while its pods fail, good after."""
    return dict(HEALTHY_SLIS if sb.cluster.gateway_healthy(NAMESPACE, GATEWAY) else BREACHING_SLIS)


async def test_slis_that_breach_after_the_upgrade_roll_it_back_even_when_health_passes(skipping_env):
    async with recovery_world(skipping_env, slis=scripted_slis(lambda sb: dict(BREACHING_SLIS))) as w:
        h = await w.start()  # the known-good tag: pods ready and the health endpoint fine
        await w.approve(h)
        rep = await h.result()
        ev = events(rep)
        # executed, then the SLI readings, their analysis and the verification, then the undo
        after = steps_after(rep, TimelineKind.EXECUTED)
        undo = after.index(TimelineKind.COMPENSATION)
        assert undo >= 2 and set(after[:undo]) == {TimelineKind.VERIFICATION}
        failure = entries(rep, TimelineKind.VERIFICATION)[undo - 1].result or ""  # the verification's verdict, last before the undo
        assert failure.startswith("SLI analysis failed") and "5xx ratio 0.31" in failure, failure
        assert rep.status == "rolled_back" and "Recorded known-good" not in ev


async def test_slis_that_pass_after_the_upgrade_record_the_known_good_tag(skipping_env):
    async with recovery_world(skipping_env, slis=scripted_slis(_following_the_gateway)) as w:
        h = await w.start()
        await w.approve(h)
        rep = await h.result()
        ev = events(rep)
        assert rep.status == "resolved" and "Metric analysis passed" in ev and "Recorded known-good" in ev
        # `successes` (3) passing readings in a row, on durable timers, then the analysis and the verification
        assert steps_after(rep, TimelineKind.EXECUTED)[:5] == [TimelineKind.VERIFICATION] * 5
        assert len(entries(rep, TimelineKind.VERIFICATION)) == 5
