"""Which build a worker is, and how its workflows move between builds (README, "Upgrades").

With `CODEBLUE_DEPLOYMENT_NAME` set, a worker joins Temporal's Worker Versioning as
`<deployment>.<build id>`: the incident, the playbooks, the restore and the redeploy are
PINNED (a run finishes on the build that started it, so their code changes need no patch), and
the post-incident workflow, which waits days for action items, is AUTO_UPGRADE (it moves to
each new build, so a change to its commands goes behind a patch of `workflows.patches`).
Without it (the drills, the tests, a single dev worker), the worker is unversioned.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest, SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from domain.config import ConfigError
from domain.release import package_version

ENV_DEPLOYMENT = "CODEBLUE_DEPLOYMENT_NAME"
ENV_BUILD_ID = "CODEBLUE_BUILD_ID"
ROOT = Path(__file__).resolve().parent.parent


@functools.cache  # the code a process runs does not change under it
def source_commit() -> str | None:
    """The checkout's commit, when the code runs from one (the image sets CODEBLUE_BUILD_ID)."""
    if not (ROOT / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def build_id() -> str:
    """`CODEBLUE_BUILD_ID`, else `<package version>+<commit>` (the version alone outside a checkout)."""
    given = os.environ.get(ENV_BUILD_ID, "").strip()
    if given:
        return given
    commit = source_commit()
    return f"{package_version()}+{commit}" if commit else package_version()


def deployment_config() -> WorkerDeploymentConfig | None:
    """The worker's versioning, or None for an unversioned worker (no deployment name set)."""
    name = os.environ.get(ENV_DEPLOYMENT, "").strip()
    if not name:
        return None
    if "." in name:
        raise ConfigError(f"{ENV_DEPLOYMENT}={name}: a deployment name has no '.' (Temporal joins it to the build ID with one)")
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=name, build_id=build_id()),
        use_worker_versioning=True,
        # every CodeBlue workflow declares its own; this only covers one that forgot
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


async def adopt_if_first(client: Client, dc: WorkerDeploymentConfig, attempts: int = 100) -> str:
    """The first build of a deployment makes itself current (nothing would run otherwise: the
    server gives no task to a versioned worker before a version is current); a later build
    waits for the operator's `set-current-version` after `codeblue upgrade check`. Returns
    what it did, for the worker's start line."""
    name, build = dc.version.deployment_name, dc.version.build_id
    for _ in range(attempts):  # the version exists once this worker's first poll reached the server
        try:
            desc = await client.workflow_service.describe_worker_deployment(
                DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name))
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.2)
            continue
        current = desc.worker_deployment_info.routing_config.current_deployment_version.build_id
        if current:
            return "current" if current == build else f"waiting: {current} is current"
        try:
            await client.workflow_service.set_worker_deployment_current_version(SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace, deployment_name=name, build_id=build,
                conflict_token=desc.conflict_token, identity=f"codeblue worker {build}"))
            return "current (the deployment's first build)"
        except RPCError:
            await asyncio.sleep(0.2)  # not registered yet, or another worker won the race
    return "not current: set it with `temporal worker deployment set-current-version`"
