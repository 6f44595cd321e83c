"""Drill scenarios by name, and `sandbox_environment(name)`: a seeded world (cluster, helm
history, receiver, optional extras) and the config that points a worker at it.

A scenario module defines `SCENARIO` (sandbox/scenario_kit.py has its parts; the multi-service
world's module, several) and is listed in SCENARIOS below. Extra services (an AWS emulator, a dedicated Redis) are async context
managers a scenario lists in `extras`; each may add to the config through `configure`.
"""


from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from domain.config import (
    CodeBlueConfig,
    HealthConfig,
    HelmConfig,
    KubernetesConfig,
    MitigationConfig,
    NotificationConfig,
    PostIncidentConfig,
    SlackConfig,
)
from domain.prometheus import AnalysisConfig, PrometheusConfig
from sandbox import (
    scenario_bad_deploy,
    scenario_database_restore,
    scenario_db_connections,
    scenario_high_memory,
    scenario_platform,
    scenario_redis_cache,
    scenario_service_recovery,
)
from sandbox.cluster import SandboxCluster
from sandbox.receiver import Receiver
from sandbox.scenario_kit import (
    BAD_TAG,
    GATEWAY,
    GOOD_TAG,
    NAMESPACE,
    RELEASE,
    SandboxEnvironment,
    Scenario,
    seed_bad_release,
)
from sandbox.slack_api import SANDBOX_BOT_TOKEN, SANDBOX_CHANNEL, SANDBOX_SIGNING_SECRET

__all__ = ["BAD_TAG", "GATEWAY", "GOOD_TAG", "NAMESPACE", "RELEASE", "SCENARIOS", "SandboxEnvironment", "Scenario",
           "sandbox_environment", "scenario", "seed_bad_release"]

# Every drill scenario, by name: each module defines one SCENARIO.
SCENARIOS: dict[str, Scenario] = {
    sc.name: sc
    for sc in (
        scenario_bad_deploy.SCENARIO,
        scenario_database_restore.SCENARIO,
        scenario_db_connections.SCENARIO,
        scenario_service_recovery.SCENARIO,
        scenario_redis_cache.SCENARIO,
        scenario_high_memory.SCENARIO,
        scenario_platform.PORTAL_BAD_DEPLOY,
        scenario_platform.TWO_INCIDENTS,
        scenario_platform.SHARED_DATABASE,
    )
}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; available: {', '.join(sorted(SCENARIOS))}") from None



def base_config(cluster: SandboxCluster, rx: Receiver) -> CodeBlueConfig:
    return CodeBlueConfig(
        kubernetes=KubernetesConfig(namespace=NAMESPACE, gateway_deployment=GATEWAY, kubeconfig=str(cluster.kubeconfig_path)),
        helm=HelmConfig(release=RELEASE, command=[sys.executable, "-m", "sandbox.helm_cli"], timeout_seconds=60),
        notifications=NotificationConfig(
            slack_webhook_url=rx.slack_url,
            statuspage_url=rx.statuspage_url,
            pagerduty_url=rx.pagerduty_url,
            webhook_url=rx.webhook_url,
        ),
        health=HealthConfig(url=rx.health_url, attempts=3, timeout_seconds=2),
        mitigation=MitigationConfig(rollout_timeout_seconds=60),
        # drills run in real time: probe the resolution every second, not every minute
        postincident=PostIncidentConfig(probe_interval_seconds=1),
        # proposal messages go to the receiver's Slack Web API stand-in
        slack=SlackConfig(api_url=rx.slack_api_url, channel=SANDBOX_CHANNEL),
    )


def sandbox_prometheus(url: str) -> PrometheusConfig:
    """The default SLIs at drill speed: 10 s rate windows instead of 1 m (a rollback shows in
    the ratio within about 10 s of scrapes), and an analysis reading every 6 s: as in
    production, two readings may still see the bad window, the next three the good one."""
    slis = [s.model_copy(update={"query": s.query.replace("[1m]", "[10s]")}) for s in PrometheusConfig().slis]
    return PrometheusConfig(url=url, slis=slis, analysis=AnalysisConfig(interval_seconds=6))


def _want_prometheus(asked: bool | None) -> bool:
    if asked is not None:
        return asked
    return os.environ.get("CODEBLUE_SANDBOX_PROMETHEUS", "1").strip().lower() not in ("0", "false", "no", "off")


@asynccontextmanager
async def _optional_prometheus(rx: Receiver) -> AsyncIterator[Any]:
    """A Prometheus scraping the receiver's /metrics every second; None (said once on stderr)
    when there is no binary or it cannot start: the sandbox works without it."""
    from sandbox.prometheus_server import PrometheusStartError, hint_once, prometheus_server

    started = False
    try:
        async with prometheus_server([rx.metrics_target]) as prom:
            started = True
            if prom is None:
                hint_once()
            yield prom
    except PrometheusStartError as e:
        if started:
            raise
        print(f"note: the sandbox's Prometheus did not start ({e}); SLIs are recorded as skipped", file=sys.stderr)
        yield None


@asynccontextmanager
async def sandbox_environment(name: str, *, prometheus: bool | None = None) -> AsyncIterator[SandboxEnvironment]:
    """`prometheus`: start a real Prometheus scraping the gateway when the binary exists (the
    default; None reads $CODEBLUE_SANDBOX_PROMETHEUS, "0" turns it off). It sets
    `config.prometheus.url` and is `extras["prometheus"]`; without it the url stays unset."""
    sc = scenario(name)
    # the sandbox pager accepts any routing key; a real one never goes near a drill
    os.environ.setdefault("CODEBLUE_PAGERDUTY_ROUTING_KEY", "sandbox")
    # likewise the Slack bot token and signing secret: the stand-in accepts the sandbox's own
    os.environ.setdefault("CODEBLUE_SLACK_BOT_TOKEN", SANDBOX_BOT_TOKEN)
    os.environ.setdefault("CODEBLUE_SLACK_SIGNING_SECRET", SANDBOX_SIGNING_SECRET)
    with tempfile.TemporaryDirectory(prefix="codeblue-sandbox-") as tmp:
        async with AsyncExitStack() as stack:
            cluster = await stack.enter_async_context(SandboxCluster())
            rx = await stack.enter_async_context(Receiver(health=lambda: cluster.gateway_healthy(NAMESPACE, GATEWAY),
                                                          slack_token=os.environ["CODEBLUE_SLACK_BOT_TOKEN"]))
            env = SandboxEnvironment(sc, cluster, rx, base_config(cluster, rx), "")
            if _want_prometheus(prometheus):
                prom = await stack.enter_async_context(_optional_prometheus(rx))
                if prom is not None:
                    env.extras["prometheus"] = prom
                    env.config = env.config.model_copy(update={"prometheus": sandbox_prometheus(prom.url)})
            for extra, factory in sc.extras.items():
                env.extras[extra] = await stack.enter_async_context(factory())
            if sc.seed is not None:
                await sc.seed(env)
            if sc.configure is not None:
                env.config = sc.configure(env.config, env)
            path = Path(tmp) / "codeblue.yaml"
            path.write_text(yaml.safe_dump(env.config.model_dump(mode="json"), sort_keys=False))
            env.config_path = str(path)
            yield env
