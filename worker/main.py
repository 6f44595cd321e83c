"""Builds the activities from the config and runs a worker on the task queue."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from temporalio.client import Client
from temporalio.worker import Worker

from activities.authority import incident_authority, incident_report, reopen_incident
from activities.aws_rds import RdsActivities
from activities.blast_radius import BlastRadiusActivities
from activities.db_cutover import DbCutoverActivities
from activities.environment import EnvironmentActivities
from activities.health import HealthActivities
from activities.helm import HelmActivities
from activities.http_client import tls_context
from activities.kubernetes import KubernetesActivities
from activities.notify import NotifierActivities
from activities.post_incident import PostIncidentActivities
from activities.prometheus import PrometheusActivities, prometheus_client
from activities.redis_cache import CacheActivities
from activities.release_state import ReleaseStateActivities
from activities.slack import SlackActivities
from activities.targets import Targets
from domain.config import AwsConfig, CodeBlueConfig, ConfigError, KubernetesConfig
from worker.heap import settle_heap
from worker.identity import IdentityInterceptor
from worker.temporal import workflow_runner
from worker.versioning import adopt_if_first, build_id, deployment_config
from workflows.registry import WORKFLOWS
from workflows.versioned import VERSIONED


def kube_api_client(cfg: KubernetesConfig) -> k8s_client.ApiClient:
    """kubeconfig from the config file, else in-cluster, else ~/.kube/config."""
    try:
        if cfg.kubeconfig:
            return k8s_config.new_client_from_config(config_file=cfg.kubeconfig, context=cfg.context)
        try:
            k8s_config.load_incluster_config()
            return k8s_client.ApiClient()
        except k8s_config.ConfigException:
            return k8s_config.new_client_from_config(context=cfg.context)
    except (k8s_config.ConfigException, OSError) as e:
        raise ConfigError(f"kubernetes: cannot load cluster credentials: {e}") from None


def rds_client(cfg: AwsConfig):
    """boto3 RDS client for the configured region (and endpoint, for sandboxes); the default
    credential chain supplies credentials."""
    import boto3

    return boto3.client("rds", region_name=cfg.region, endpoint_url=cfg.endpoint_url)


def activities_for(cfg: CodeBlueConfig, http: httpx.AsyncClient, helm_env: dict[str, str] | None = None,
                   prometheus: httpx.AsyncClient | None = None) -> list:
    """`prometheus`: the client `prometheus_client` built for this config (running_worker closes
    it); None: one is built here (its files and token read now)."""
    cfg = cfg.with_env_secrets()
    targets = Targets(cfg)  # a request naming anything else than this config is refused
    k8s = KubernetesActivities(kube_api_client(cfg.kubernetes), targets=targets)
    env = dict(helm_env or {})
    if cfg.kubernetes.kubeconfig and "KUBECONFIG" not in env:
        env["KUBECONFIG"] = cfg.kubernetes.kubeconfig
    helm = HelmActivities(cfg.helm.command, env, targets=targets)
    notify = NotifierActivities(cfg.notifications, http, targets=targets)
    health = HealthActivities(http, targets=targets)
    rds = RdsActivities(rds_client(cfg.aws))
    cutover = DbCutoverActivities(kube_api_client(cfg.kubernetes), targets=targets)
    post_incident = PostIncidentActivities(cfg.postincident, http, targets=targets)
    release_state = ReleaseStateActivities(kube_api_client(cfg.kubernetes))
    cache = CacheActivities(cfg.aws, cfg.cache)
    # the bot token from the worker's environment only; unset: proposal messages are skipped and
    # the incident channel is the webhook message
    slack = SlackActivities(cfg.slack, os.environ.get(cfg.slack.bot_token_env) or None, ui_base_url=cfg.ui.base_url)
    # queries, URL, token, headers, CA and client certificate from this config only
    slis = PrometheusActivities(cfg.prometheus, prometheus or prometheus_client(cfg.prometheus))
    guard = BlastRadiusActivities(cfg.blast_radius)
    return [
        EnvironmentActivities(cfg).worker_config,
        guard.acquire_target,
        guard.release_target,
        incident_authority,
        incident_report,
        reopen_incident,
        k8s.pod_status,
        k8s.service_status,
        k8s.gateway_logs,
        k8s.deployment_status,
        k8s.pod_metrics,
        k8s.scale_deployment,
        k8s.rollout_restart,
        k8s.wait_rollout,
        k8s.db_check,
        helm.helm_history,
        helm.helm_rollback,
        helm.helm_upgrade,
        helm.helm_preflight,
        helm.helm_revision_values,
        release_state.release_ready,
        release_state.read_known_good,
        release_state.record_known_good,
        cache.describe_cache_cluster,
        cache.redis_stats,
        cache.redis_flush,
        notify.page,
        notify.change_event,
        notify.status_page,
        notify.post_message,
        slack.slack_post_proposals,
        slack.slack_update_proposal,
        slack.slack_open_channel,
        health.probe_health,
        rds.rds_preflight,
        rds.rds_restore,
        rds.rds_wait_available,
        rds.rds_instance_status,
        rds.rds_delete_restored,
        cutover.db_verify_restored,
        cutover.db_secret_backup,
        cutover.db_secret_point,
        cutover.db_secret_restore,
        post_incident.smoke_check,
        post_incident.schedule_postmortem,
        slis.sli_values,
        slis.sli_range,
    ]


@asynccontextmanager
async def running_worker(
    client: Client, cfg: CodeBlueConfig, task_queue: str, **worker_options
) -> AsyncIterator[Worker]:
    """A started worker, shut down cleanly on exit (the SDK can abort at exit otherwise)."""
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=cfg.notifications.timeout_seconds,
                                                                 verify=tls_context()))
        # Prometheus' own client (its CA, client certificate, token, headers): a file or token
        # that cannot be used stops the start in one line
        prometheus = await stack.enter_async_context(prometheus_client(cfg.with_env_secrets().prometheus))
        # a worker verifies every command's proof, whatever client it was given
        verifying = any(isinstance(i, IdentityInterceptor) for i in client.config()["interceptors"])
        versioned = deployment_config()
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=VERSIONED if versioned else WORKFLOWS,
            activities=activities_for(cfg, http, prometheus=prometheus),
            interceptors=[] if verifying else [IdentityInterceptor.from_env()],
            workflow_runner=workflow_runner(),
            deployment_config=versioned,
            # unversioned, the SDK would name the build by hashing the code of every loaded
            # module (a quarter of a second of each worker's start); ours is version + commit
            build_id=None if versioned else build_id(),
            **worker_options,
        )
        async with worker:
            yield worker


async def serve_until_signal(client: Client, cfg: CodeBlueConfig, task_queue: str) -> None:
    from worker.logs import configure_logging

    configure_logging()  # JSON lines with the incident ID when CODEBLUE_LOG_FORMAT=json
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(client, cfg, task_queue):
        settle_heap(young_threshold=None)  # started: what it imported stays, out of the collector's sight
        dc = deployment_config()
        if dc is not None:
            state = await adopt_if_first(client, dc)
            logging.getLogger("codeblue.worker").warning(
                "version %s.%s: %s", dc.version.deployment_name, dc.version.build_id, state)
        await stop.wait()
