"""Drill scenarios: a seeded cluster, a helm history, a receiver, and the config pointing at them."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import yaml

from domain.config import (
    CodeBlueConfig,
    HealthConfig,
    HelmConfig,
    KubernetesConfig,
    MitigationConfig,
    NotificationConfig,
)
from sandbox.cluster import SandboxCluster
from sandbox.helm_cli import seed_release
from sandbox.receiver import Receiver

NAMESPACE = "healthcare-prod"
GATEWAY = "api-gateway"
RELEASE = "healthcare-platform"
GOOD_TAG = "v1.4.2"
BAD_TAG = "v1.5.0"


@dataclass
class Scenario:
    name: str
    description: str
    title: str
    severity: str
    # what the drill's IC approves; everything else proposed is rejected
    approve: tuple[str, ...]


SCENARIOS = {
    "bad-deploy": Scenario(
        name="bad-deploy",
        description=(
            f"release revision 12 ({BAD_TAG}) went out 12 minutes ago; api-gateway pods crash-loop "
            "and log connection errors; revision 11 was good"
        ),
        title="api-gateway crash-looping after deploy; patients cannot load records",
        severity="P0",
        approve=("rollback",),
    ),
}


@dataclass
class SandboxEnvironment:
    scenario: Scenario
    cluster: SandboxCluster
    receiver: Receiver
    config: CodeBlueConfig
    config_path: str


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; available: {', '.join(SCENARIOS)}") from None


@asynccontextmanager
async def sandbox_environment(name: str) -> AsyncIterator[SandboxEnvironment]:
    sc = scenario(name)
    # the sandbox pager accepts any routing key; a real one never goes near a drill
    os.environ.setdefault("CODEBLUE_PAGERDUTY_ROUTING_KEY", "sandbox")
    with tempfile.TemporaryDirectory(prefix="codeblue-sandbox-") as tmp:
        async with SandboxCluster() as cluster:
            await cluster.seed_healthcare_prod(
                namespace=NAMESPACE, gateway=GATEWAY, tag=BAD_TAG, replicas=3, bad_tags={BAD_TAG}
            )
            now = datetime.now(timezone.utc)
            await asyncio.to_thread(
                seed_release,
                cluster.api_client(),
                NAMESPACE,
                RELEASE,
                "healthcare-platform",
                [
                    {"revision": 10, "image_tag": "v1.4.1", "updated": now - timedelta(days=9), "chart": "healthcare-platform-1.4.1"},
                    {"revision": 11, "image_tag": GOOD_TAG, "updated": now - timedelta(days=3), "chart": "healthcare-platform-1.4.2"},
                    {"revision": 12, "image_tag": BAD_TAG, "updated": now - timedelta(minutes=12), "chart": "healthcare-platform-1.5.0"},
                ],
            )
            await cluster.reconcile()
            async with Receiver(health=lambda: cluster.gateway_healthy(NAMESPACE, GATEWAY)) as rx:
                cfg = CodeBlueConfig(
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
                )
                path = Path(tmp) / "codeblue.yaml"
                path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
                yield SandboxEnvironment(sc, cluster, rx, cfg, str(path))
