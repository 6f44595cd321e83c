"""Fixtures for tests against the sandbox Kubernetes API (kmock over real HTTP).

Registered for every test module by tests/conftest.py (pytest_plugins).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import kubernetes.client
import pytest
import pytest_asyncio

from activities.kubernetes import KubernetesActivities
from sandbox.cluster import SandboxCluster


@pytest_asyncio.fixture
async def sandbox_cluster() -> AsyncIterator[SandboxCluster]:
    """A fresh, empty cluster per test (the background reconciler runs every 0.2 s)."""
    async with SandboxCluster() as cluster:
        yield cluster


@pytest.fixture
def sandbox_api(sandbox_cluster: SandboxCluster) -> Iterator[kubernetes.client.ApiClient]:
    api = sandbox_cluster.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def k8s_activities(sandbox_api: kubernetes.client.ApiClient) -> KubernetesActivities:
    return KubernetesActivities(sandbox_api, request_timeout_seconds=5.0)


def deployment(cluster: SandboxCluster, namespace: str, name: str) -> dict[str, Any]:
    """The stored deployment, which the test expects to exist."""
    dep = cluster.deployment(namespace, name)
    assert dep is not None, f"no deployment {namespace}/{name}"
    return dep
