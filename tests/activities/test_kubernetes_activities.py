"""KubernetesActivities against the sandbox API server over real HTTP (no client mocking),
and db_check against the real PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import base64
import threading
import time

import kubernetes.client
import kubernetes.config
import pytest
import urllib3.exceptions
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.kubernetes import KubernetesActivities
from domain.cluster import (
    DbCheckRequest,
    HelmRollbackRequest,
    LogsQuery,
    NamespaceQuery,
    RestartRequest,
    RolloutWaitRequest,
    ScaleRequest,
)
from domain.config import KubernetesConfig
from domain.database_restore import RdsWaitRequest
from domain.service_recovery import HelmUpgradeRequest, ReleaseReadyRequest
from sandbox.cluster import SandboxCluster
from starters.ports import free_port
from tests.support.cluster import deployment

NS = "healthcare-prod"
GW = "api-gateway"
MI = 1024 * 1024
PATTERNS = KubernetesConfig().error_patterns


def _gateway(report):
    return [p for p in report.pods if p.owner == GW]


def _pod_names(cluster: SandboxCluster) -> set[str]:
    return {p["metadata"]["name"] for p in cluster.pods(NS, GW)}


async def test_kubeconfig_points_at_the_sandbox(sandbox_cluster: SandboxCluster):
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(sandbox_cluster.kubeconfig_path), client_configuration=cfg)
    assert cfg.host == sandbox_cluster.url
    assert sandbox_cluster.url.startswith("http://127.0.0.1:")
    await sandbox_cluster.seed_healthcare_prod()
    assert sandbox_cluster.gateway_healthy(NS, GW)
    sandbox_cluster.set_image(NS, GW, "registry.local/api-gateway:v1.5.0")
    await sandbox_cluster.reconcile()
    assert not sandbox_cluster.gateway_healthy(NS, GW)


async def test_bad_tag_pods_crash_loop(sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities):
    await sandbox_cluster.seed_healthcare_prod(tag="v1.5.0", bad_tags={"v1.5.0"})
    report = await k8s_activities.pod_status(NamespaceQuery(namespace=NS))

    gateway = _gateway(report)
    assert len(gateway) == 3
    for pod in gateway:
        assert pod.phase == "Running"
        assert not pod.ready
        assert pod.waiting_reason == "CrashLoopBackOff"
        assert pod.last_termination_reason == "Error"
        assert pod.restarts >= 1
        assert pod.image == "registry.local/api-gateway:v1.5.0"
    portal = [p for p in report.pods if p.owner == "patient-portal"]
    assert len(portal) == 2 and all(p.ready and p.restarts == 0 and p.waiting_reason is None for p in portal)
    assert {p.name for p in report.not_ready} == {p.name for p in gateway}

    # restartCount keeps growing while the pods crash-loop
    sandbox_cluster.behaviour.crash_period_seconds = 0.05
    await asyncio.sleep(0.2)
    await sandbox_cluster.reconcile()
    later = {p.name: p.restarts for p in _gateway(await k8s_activities.pod_status(NamespaceQuery(namespace=NS)))}
    assert all(later[p.name] > p.restarts for p in gateway)

    deployments = {d.name: d for d in (await k8s_activities.deployment_status(NamespaceQuery(namespace=NS))).deployments}
    assert deployments[GW].desired == 3 and deployments[GW].ready == 0 and deployments[GW].unavailable == 3
    assert deployments[GW].images == ["registry.local/api-gateway:v1.5.0"]
    assert deployments["patient-portal"].ready == 2

    services = {s.name: s for s in (await k8s_activities.service_status(NamespaceQuery(namespace=NS))).services}
    assert services[GW].type == "ClusterIP" and services[GW].ready_endpoints == 0
    assert services["patient-portal"].ready_endpoints == 2


async def test_logs_counted_never_returned(sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities):
    await sandbox_cluster.seed_healthcare_prod(tag="v1.5.0")
    report = await k8s_activities.gateway_logs(LogsQuery(namespace=NS, deployment=GW, tail_lines=500, patterns=PATTERNS))
    assert report.pods_read == 3
    assert report.lines_scanned > 150
    assert report.error_counts["connection"] > 0
    assert report.error_counts["timeout"] > 0
    assert report.error_counts["out_of_memory"] == 0
    assert report.error_rate > 0.3
    assert "5432" not in report.model_dump_json()  # counts only, no line text

    tailed = await k8s_activities.gateway_logs(LogsQuery(namespace=NS, deployment=GW, tail_lines=4, patterns=PATTERNS))
    assert tailed.lines_scanned == 12  # tailLines honoured per pod

    sandbox_cluster.set_image(NS, GW, "registry.local/api-gateway:v1.4.2")
    await sandbox_cluster.reconcile()
    healthy = await k8s_activities.gateway_logs(LogsQuery(namespace=NS, deployment=GW, patterns=PATTERNS))
    assert healthy.pods_read == 3 and 0 < healthy.lines_scanned < 30
    assert healthy.error_counts == {name: 0 for name in PATTERNS}


async def test_starting_pods_have_no_logs_yet():
    async with SandboxCluster(pod_start_seconds=60, reconcile_interval=None) as cluster:
        await cluster.seed_healthcare_prod()
        with cluster.api_client() as api:
            acts = KubernetesActivities(api)
            pods = _gateway(await acts.pod_status(NamespaceQuery(namespace=NS)))
            logs = await acts.gateway_logs(LogsQuery(namespace=NS, deployment=GW, patterns=PATTERNS))
    assert len(pods) == 3
    assert all(p.phase == "Pending" and not p.ready and p.waiting_reason == "ContainerCreating" for p in pods)
    assert (logs.pods_read, logs.lines_scanned) == (0, 0)
    assert not cluster.gateway_healthy(NS, GW)


async def test_services_ready_endpoints_and_endpoints_api_missing():
    async with SandboxCluster(reconcile_interval=None) as cluster:
        await cluster.seed_healthcare_prod()
        with cluster.api_client() as api:
            acts = KubernetesActivities(api)
            report = await acts.service_status(NamespaceQuery(namespace=NS))
            assert {s.name: s.ready_endpoints for s in report.services} == {GW: 3, "patient-portal": 2}

            # A server that does not serve v1/endpoints answers 404: every count is 0, no error.
            emulator = cluster.emulator
            for key in [k for k in emulator.objects.keys() if k[0] == "v1/endpoints"]:
                del emulator.objects[key]
            del emulator.resources["v1/endpoints"]
            report = await acts.service_status(NamespaceQuery(namespace=NS))
    assert {s.name: (s.type, s.ready_endpoints) for s in report.services} == {
        GW: ("ClusterIP", 0), "patient-portal": ("ClusterIP", 0)
    }


async def test_scale_sets_absolute_count_and_pods_follow(
    sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities
):
    await sandbox_cluster.seed_healthcare_prod()
    result = await k8s_activities.scale_deployment(ScaleRequest(namespace=NS, deployment=GW, replicas=5))
    assert (result.previous_replicas, result.replicas) == (3, 5)
    await sandbox_cluster.reconcile()
    assert len(sandbox_cluster.pods(NS, GW)) == 5
    assert len(_gateway(await k8s_activities.pod_status(NamespaceQuery(namespace=NS)))) == 5
    generation = deployment(sandbox_cluster, NS, GW)["metadata"]["generation"]

    retried = await k8s_activities.scale_deployment(ScaleRequest(namespace=NS, deployment=GW, replicas=5))
    assert (retried.previous_replicas, retried.replicas) == (5, 5)
    await sandbox_cluster.reconcile()
    assert len(sandbox_cluster.pods(NS, GW)) == 5
    assert deployment(sandbox_cluster, NS, GW)["metadata"]["generation"] == generation


async def test_rollout_restart_replaces_pods_and_wait_completes(
    sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities
):
    await sandbox_cluster.seed_healthcare_prod()
    before = _pod_names(sandbox_cluster)
    stamp = "2025-01-01T00:00:00Z"

    await k8s_activities.rollout_restart(RestartRequest(namespace=NS, deployment=GW, restarted_at=stamp))
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *details: beats.append(details)
    state = await env.run(
        k8s_activities.wait_rollout, RolloutWaitRequest(namespace=NS, deployment=GW, timeout_seconds=10, poll_seconds=0.05)
    )
    assert state.complete and state.desired == state.updated == state.available == 3
    assert beats
    after = _pod_names(sandbox_cluster)
    assert len(after) == 3 and not after & before
    pods = sandbox_cluster.pods(NS, GW)
    assert all(p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == stamp for p in pods)
    assert deployment(sandbox_cluster, NS, GW)["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"

    # A retry writes the same annotation: no new template, no new pods.
    await k8s_activities.rollout_restart(RestartRequest(namespace=NS, deployment=GW, restarted_at=stamp))
    await sandbox_cluster.reconcile()
    assert _pod_names(sandbox_cluster) == after


async def test_wait_rollout_times_out_when_pods_never_ready(
    sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities
):
    await sandbox_cluster.seed_healthcare_prod()
    sandbox_cluster.set_image(NS, GW, "registry.local/api-gateway:v1.5.0")
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *details: beats.append(details)
    with pytest.raises(ApplicationError) as err:
        await env.run(
            k8s_activities.wait_rollout, RolloutWaitRequest(namespace=NS, deployment=GW, timeout_seconds=1, poll_seconds=0.1)
        )
    assert err.value.type == "RolloutTimeout"
    assert err.value.non_retryable
    assert "\n" not in err.value.message and "api-gateway" in err.value.message
    assert len(beats) >= 3


async def test_missing_namespace_and_deployment_are_not_found(k8s_activities: KubernetesActivities):
    for call in (
        k8s_activities.pod_status(NamespaceQuery(namespace="no-such-ns")),
        k8s_activities.deployment_status(NamespaceQuery(namespace="no-such-ns")),
        k8s_activities.scale_deployment(ScaleRequest(namespace="no-such-ns", deployment=GW, replicas=2)),
        k8s_activities.gateway_logs(LogsQuery(namespace="no-such-ns", deployment=GW)),
    ):
        with pytest.raises(ApplicationError) as err:
            await call
        assert err.value.type == "NotFound"
        assert err.value.non_retryable
        assert "no-such-ns" in err.value.message and "\n" not in err.value.message


async def test_forbidden_is_not_retryable(sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities):
    await sandbox_cluster.seed_healthcare_prod()
    sandbox_cluster.forbid("deployments/scale", namespace=NS, verbs={"patch"})
    with pytest.raises(ApplicationError) as err:
        await k8s_activities.scale_deployment(ScaleRequest(namespace=NS, deployment=GW, replicas=6))
    assert err.value.type == "Forbidden" and err.value.non_retryable
    assert "forbidden" in err.value.message and "\n" not in err.value.message
    assert deployment(sandbox_cluster, NS, GW)["spec"]["replicas"] == 3


async def test_unreachable_api_is_retryable():
    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{free_port()}"
    cfg.retries = 0
    with kubernetes.client.ApiClient(cfg) as api:
        acts = KubernetesActivities(api, request_timeout_seconds=2.0)
        with pytest.raises(ApplicationError) as err:
            await acts.pod_status(NamespaceQuery(namespace=NS))
    assert err.value.type == "KubernetesUnavailable"
    assert not err.value.non_retryable


async def test_metrics_report_memory_against_limit(
    sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities
):
    await sandbox_cluster.seed_healthcare_prod()
    report = await k8s_activities.pod_metrics(NamespaceQuery(namespace=NS))
    assert report.served
    gateway = [m for m in report.pods if m.pod.startswith(GW + "-")]
    assert len(gateway) == 3 and len(report.pods) == 5
    assert all(m.memory_bytes == 300 * MI and m.memory_limit_bytes == 512 * MI for m in gateway)

    sandbox_cluster.set_image(NS, GW, "registry.local/api-gateway:v1.5.0-oom")  # an oom_tags tag
    await sandbox_cluster.reconcile()
    report = await k8s_activities.pod_metrics(NamespaceQuery(namespace=NS))
    gateway = [m for m in report.pods if m.pod.startswith(GW + "-")]
    assert len(gateway) == 3 and all(m.memory_ratio is not None and m.memory_ratio > 0.95 for m in gateway)
    pods = _gateway(await k8s_activities.pod_status(NamespaceQuery(namespace=NS)))
    assert {p.last_termination_reason for p in pods} == {"OOMKilled"}


async def test_metrics_api_not_served():
    async with SandboxCluster(metrics=False, reconcile_interval=None) as cluster:
        await cluster.seed_healthcare_prod()
        with cluster.api_client() as api:
            report = await KubernetesActivities(api).pod_metrics(NamespaceQuery(namespace=NS))
    assert report.served is False and report.pods == []


def _db_secret(cluster: SandboxCluster, url: str) -> None:
    cluster.apply({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "healthcare-db-secret", "namespace": NS},
        "data": {"DATABASE_URL": base64.b64encode(url.encode()).decode()},
    })


DB_REQUEST = DbCheckRequest(
    namespace=NS, secret_name="healthcare-db-secret", secret_key="DATABASE_URL", deployment=GW,
    connect_timeout_seconds=2,
)


async def test_db_check_against_real_postgres(sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities):
    await sandbox_cluster.seed_healthcare_prod(database_url=None)
    password = "Fake-Pw-7q3zX"  # trust auth ignores it; it must never be reported
    _db_secret(sandbox_cluster, f"postgresql://postgres:{password}@127.0.0.1:5432/postgres")
    result = await k8s_activities.db_check(DB_REQUEST)
    assert result.ok, result.detail
    assert result.latency_ms is not None and result.latency_ms > 0
    assert "127.0.0.1:5432/postgres" in result.detail
    assert password not in result.detail and "postgresql://" not in result.detail


async def test_db_check_wrong_port_fails_without_leaking(
    sandbox_cluster: SandboxCluster, k8s_activities: KubernetesActivities
):
    await sandbox_cluster.seed_healthcare_prod(database_url=None)
    password = "Fake-Pw-7q3zX"
    port = free_port()
    _db_secret(sandbox_cluster, f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres")
    result = await k8s_activities.db_check(DB_REQUEST)
    assert result.ok is False
    assert result.latency_ms is None
    assert f"127.0.0.1:{port}/postgres" in result.detail
    assert password not in result.detail and "postgresql://" not in result.detail

    with pytest.raises(ApplicationError) as err:
        await k8s_activities.db_check(DB_REQUEST.model_copy(update={"secret_key": "NOPE"}))
    assert err.value.type == "NotFound" and err.value.non_retryable


class _SlowBody:
    """A pod log response whose body takes `delay` seconds to read (a big or slow log), and
    notes which thread read it; or fails to read, as a connection dropped mid-body does."""

    def __init__(self, resp, readers: list[int], delay: float = 0.0, fail: bool = False) -> None:
        self._resp, self._readers, self._delay, self._fail = resp, readers, delay, fail

    @property
    def data(self) -> bytes:
        self._readers.append(threading.get_ident())
        time.sleep(self._delay)
        if self._fail:
            raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
        return self._resp.data

    def release_conn(self) -> None:
        self._resp.release_conn()


def _slow_logs(acts: KubernetesActivities, readers: list[int], **kw) -> None:
    real = acts._core.read_namespaced_pod_log

    def read(*a, **k):
        return _SlowBody(real(*a, **k), readers, **kw)

    acts._core.read_namespaced_pod_log = read


async def test_pod_log_body_is_read_off_the_event_loop(sandbox_cluster: SandboxCluster, sandbox_api):
    await sandbox_cluster.seed_healthcare_prod(tag="v1.5.0")
    acts = KubernetesActivities(sandbox_api, request_timeout_seconds=5.0, heartbeat_seconds=0.05)
    readers: list[int] = []
    _slow_logs(acts, readers, delay=0.3)
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *d: beats.append(d)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        report = await env.run(acts.gateway_logs, LogsQuery(namespace=NS, deployment=GW, tail_lines=500, patterns=PATTERNS))
    finally:
        tick.cancel()
    assert report.pods_read == 3 and report.error_counts["connection"] > 0
    assert len(readers) == 3 and threading.get_ident() not in readers  # every body read in a worker thread
    assert max(gaps) < 0.2, max(gaps)  # the loop kept running through 3 x 0.3 s of reading
    assert len(beats) >= 6  # on the timer while the bodies were read, not once per pod
    assert {d[0]["pods_read"] for d in beats} >= {0, 1, 2}  # with the progress so far


async def test_pod_log_body_read_failure_is_mapped(sandbox_cluster: SandboxCluster, sandbox_api):
    await sandbox_cluster.seed_healthcare_prod(tag="v1.5.0")
    acts = KubernetesActivities(sandbox_api, request_timeout_seconds=5.0)
    readers: list[int] = []
    _slow_logs(acts, readers, fail=True)
    with pytest.raises(ApplicationError) as err:
        await acts.gateway_logs(LogsQuery(namespace=NS, deployment=GW, patterns=PATTERNS))
    assert err.value.type == "KubernetesUnavailable" and not err.value.non_retryable
    assert "logs of pod" in err.value.message and "ProtocolError" in err.value.message


async def test_wait_rollout_heartbeats_between_slow_polls(sandbox_cluster: SandboxCluster, sandbox_api):
    await sandbox_cluster.seed_healthcare_prod()
    sandbox_cluster.set_image(NS, GW, "registry.local/api-gateway:v1.5.0")
    acts = KubernetesActivities(sandbox_api, request_timeout_seconds=5.0, heartbeat_seconds=0.05)
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *d: beats.append(d)
    with pytest.raises(ApplicationError) as err:
        await env.run(acts.wait_rollout, RolloutWaitRequest(namespace=NS, deployment=GW, timeout_seconds=1, poll_seconds=0.5))
    assert err.value.type == "RolloutTimeout"
    assert len(beats) >= 10  # 3 polls in the second, a beat every 0.05 s between them
    assert all(isinstance(d[0].get("started_at"), float) for d in beats)


def test_wait_budgets_cover_their_own_timeouts():
    rollout = RolloutWaitRequest(namespace=NS, deployment=GW, timeout_seconds=600)
    # the deadline, then one last read of up to the request timeout
    assert rollout.budget_seconds() >= 600 + KubernetesActivities(None).request_timeout_seconds
    rollback = HelmRollbackRequest(release="r", namespace=NS, to_revision=1, from_revision=2, timeout_seconds=300)
    upgrade = HelmUpgradeRequest(release="r", namespace=NS, chart="./c", image_tag="v1", from_revision=1,
                                 marker="m", timeout_seconds=300)
    ready = ReleaseReadyRequest(namespace=NS, release="r", timeout_seconds=300)
    # helm's own --timeout plus the activity's 60 s guard against a hung helm process
    assert rollback.budget_seconds() >= 360 and upgrade.budget_seconds() >= 360 and ready.budget_seconds() > 300
    assert RdsWaitRequest(target="t", window_seconds=300.5).budget_seconds() > 300.5
