"""What a drill scenario is made of: the sandbox's names, the `Scenario` a scenario module
defines, the world it is seeded into, and the bad release most scenarios start from.

Scenario modules (sandbox/scenario_*.py) import this; the registry (sandbox/scenarios.py)
imports them. Nothing here imports a scenario.
"""


from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.config import (
    CodeBlueConfig,
)
from sandbox.cluster import SandboxCluster
from sandbox.helm_cli import KubeRest, seed_release
from sandbox.receiver import Receiver

NAMESPACE = "healthcare-prod"
GATEWAY = "api-gateway"
RELEASE = "healthcare-platform"
GOOD_TAG = "v1.4.2"
BAD_TAG = "v1.5.0"


@dataclass
class SandboxEnvironment:
    scenario: Scenario
    cluster: SandboxCluster
    receiver: Receiver
    config: CodeBlueConfig
    config_path: str
    # what `extras` started, by name (e.g. "aws" -> the moto server handle)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    description: str
    title: str
    severity: str
    # which drill driver in sandbox.drills.runner plays it (the IC's moves)
    driver: str = "incident"
    # actions the drill's IC approves in the incident driver; everything else is rejected
    approve: tuple[str, ...] = ()
    # the catalog service the incident is about (None: the flat config's, the gateway)
    service: str | None = None
    # prepares the cluster (and extras) before the worker starts
    seed: Callable[[SandboxEnvironment], Awaitable[None]] | None = None
    # extra services: name -> factory of an async context manager yielding a handle
    extras: dict[str, Callable[[], Any]] = field(default_factory=dict)
    # last word on the worker's config, given the started world
    configure: Callable[[CodeBlueConfig, SandboxEnvironment], CodeBlueConfig] | None = None


async def seed_gateway_release(env: SandboxEnvironment, current_tag: str, revisions: list[dict[str, Any]]) -> None:
    """healthcare-prod with the gateway at `current_tag` (BAD_TAG pods crash-loop) and the
    release history `revisions` (helm_cli.seed_release's shape)."""
    await env.cluster.seed_healthcare_prod(
        namespace=NAMESPACE, gateway=GATEWAY, tag=current_tag, replicas=3, bad_tags={BAD_TAG}
    )
    api = KubeRest.from_kubeconfig(str(env.cluster.kubeconfig_path))
    try:
        await asyncio.to_thread(seed_release, api, NAMESPACE, RELEASE, "healthcare-platform", revisions)
    finally:
        api.close()
    await env.cluster.reconcile()


async def seed_bad_release(env: SandboxEnvironment, *, current_tag: str = BAD_TAG) -> None:
    """healthcare-prod with release history 10, 11 (good, 3 days ago), 12 (12 minutes ago)."""
    now = datetime.now(UTC)
    await seed_gateway_release(env, current_tag, [
        {"revision": 10, "image_tag": "v1.4.1", "updated": now - timedelta(days=9), "chart": "healthcare-platform-1.4.1"},
        {"revision": 11, "image_tag": GOOD_TAG, "updated": now - timedelta(days=3), "chart": "healthcare-platform-1.4.2"},
        {"revision": 12, "image_tag": current_tag, "updated": now - timedelta(minutes=12), "chart": "healthcare-platform-1.5.0"},
    ])
