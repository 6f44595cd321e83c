"""DatabaseRestoreWorkflow end to end on real parts: RDS over HTTP (moto_server), the sandbox
Kubernetes API (Secret, Deployment, pods) and the local PostgreSQL as the restored endpoint."""

from __future__ import annotations

import pytest_asyncio
from temporalio import activity

from activities.aws_rds import RdsActivities
from activities.db_cutover import DbCutoverActivities, backup_name
from activities.kubernetes import RESTARTED_AT_ANNOTATION, KubernetesActivities
from domain.cluster import DbCheckRequest, DbCheckResult, RestartRequest, RolloutState
from domain.incident import ActionState, TimelineKind
from sandbox.aws import AwsEmulator
from sandbox.aws_rds_seed import rds_client, seed_rds
from sandbox.cluster import SandboxCluster
from sandbox.memory_world import World
from starters.ports import free_port
from tests.support.histories import history_text
from tests.support.polling import until
from tests.support.restore import approve, events, proposed, restore_config, restore_input, restore_worker, start
from workflows.database_restore import DatabaseRestoreWorkflow

NS, GATEWAY, SECRET, KEY = "healthcare-prod", "api-gateway", "healthcare-db-secret", "DATABASE_URL"
PASSWORD = "S3cret-Old-Pw-7731"


# the failed source: nothing listens there any more
OLD_URL = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/postgres?application_name=api-gateway"
NEW_URL = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/postgres?application_name=api-gateway"


@pytest_asyncio.fixture
async def world(empty_aws: AwsEmulator):
    aws = empty_aws
    async with SandboxCluster() as cluster:
        seed_rds(aws)
        await cluster.seed_healthcare_prod(namespace=NS, gateway=GATEWAY, database_url=OLD_URL)
        api = cluster.api_client()
        try:
            yield aws, cluster, api
        finally:
            api.close()


def _activities(aws, api, fail_first_check: bool = False) -> tuple[list, World, list[str]]:
    fakes = World()
    k8s = KubernetesActivities(api, request_timeout_seconds=5.0)
    rds = RdsActivities(rds_client(aws))
    cut = DbCutoverActivities(api)
    restarts: list[str] = []
    checks: list[bool] = []

    @activity.defn(name="rollout_restart")
    async def rollout_restart(r: RestartRequest) -> RolloutState:
        restarts.append(r.restarted_at)
        return await k8s.rollout_restart(r)

    @activity.defn(name="db_check")
    async def db_check(r: DbCheckRequest) -> DbCheckResult:
        if fail_first_check and not checks:
            checks.append(False)
            return DbCheckResult(ok=False, detail="connection pool exhausted (scripted)")
        res = await k8s.db_check(r)
        checks.append(res.ok)
        return res

    keep = {"page", "worker_config", "incident_authority", "acquire_target", "release_target"}
    acts = [a for a in fakes.activities() if a.__name__ in keep] + [
        rollout_restart, k8s.wait_rollout, db_check,
        rds.rds_preflight, rds.rds_restore, rds.rds_wait_available, rds.rds_delete_restored,
        cut.db_verify_restored, cut.db_secret_backup, cut.db_secret_point, cut.db_secret_restore,
    ]
    return acts, fakes, restarts


def _cfg():
    return restore_config(endpoint_override="127.0.0.1:5432", poll_interval_seconds=0.2, poll_window_seconds=5)


async def _run_to_the_end(env, h):
    await until(h, proposed("restore"), "gate 1", timeout=30, query=DatabaseRestoreWorkflow.status)
    await approve(env, h, "restore")
    rep = await until(h, proposed("cutover"), "gate 2", timeout=30, query=DatabaseRestoreWorkflow.status)
    await approve(env, h, "cutover")
    return rep, await h.result()


async def test_restore_verify_and_cutover_on_real_parts_keep_the_old_url_out_of_history(skipping_env, world):
    env, (aws, cluster, api) = skipping_env, world
    acts, fakes, restarts = _activities(aws, api)
    async with restore_worker(env, acts, fakes.handles) as tq:
        h = await start(env, restore_input(_cfg()), tq, fakes.handles)
        gate2, rep = await _run_to_the_end(env, h)
        history = await h.fetch_history()
    cut = next(a for a in gate2.actions if a.id == "cutover")
    assert "healthcare-prod-restored." in cut.reason and "SELECT 1 ok; sanity query returned" in cut.reason
    assert rep.status == "restored" and rep.verified, events(rep)
    assert [(a.id, a.state) for a in rep.actions] == [("restore", ActionState.EXECUTED), ("cutover", ActionState.EXECUTED)]
    assert cluster.secret_value(NS, SECRET, KEY) == NEW_URL
    assert cluster.secret_value(NS, backup_name(SECRET, h.id.removesuffix("-db-restore")), KEY) == OLD_URL
    dep = cluster.deployment(NS, GATEWAY)
    assert dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] == restarts[-1]
    assert cluster.gateway_healthy(NS, GATEWAY)
    text = history_text(history.to_json_dict())
    assert "healthcare-prod-restored" in text and "sanity query returned" in text  # the search can find things
    for secret in (PASSWORD, OLD_URL, NEW_URL, "S3cret"):
        assert secret not in text


async def test_failed_post_cutover_check_puts_the_exact_old_secret_back_restarts_and_pages_em(skipping_env, world):
    env, (aws, cluster, api) = skipping_env, world
    acts, fakes, restarts = _activities(aws, api, fail_first_check=True)
    async with restore_worker(env, acts, fakes.handles) as tq:
        h = await start(env, restore_input(_cfg()), tq, fakes.handles)
        _, rep = await _run_to_the_end(env, h)
    assert rep.status == "cutover_compensated" and rep.verified is False, events(rep)
    assert cluster.secret_value(NS, SECRET, KEY) == OLD_URL
    assert len(restarts) == 2 and restarts[0] != restarts[1]
    dep = cluster.deployment(NS, GATEWAY)
    assert dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] == restarts[1]
    assert [p.dedup_key.rsplit(":", 1)[-1] for p in fakes.pages_to("engineering_manager")] == ["db-cutover-failed"]
    ev = events(rep)
    # which undo step each entry is is only in its words (the secret is back: checked above)
    comp = [e.event for e in rep.timeline if e.kind == TimelineKind.COMPENSATION]
    assert "Compensation: old database secret restored" in comp
    assert "Compensation: connection check failed" in comp  # the old source is down: reported, not hidden
    assert "Restored instance kept for forensics" in ev
