"""The upgrade policy (README, "Upgrades"): pinned runs stay on their build, patches only where
a run moves between builds, and `codeblue upgrade check` says when a build may roll out."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from domain.incident import IncidentInput
from domain.post_incident import PostIncidentInput
from sandbox.memory_world import World, incident_worker
from starters import service
from tests.support.cli import codeblue
from tests.support.foreign_post_incident import ForeignPostIncident
from tests.support.identity import signing_interceptors
from tests.support.paths import ROOT
from tests.support.polling import until
from tests.support.post_incident import resolved_report
from tests.support.workflows import incident
from worker.versioning import adopt_if_first
from workflows.patches import PATCHES
from workflows.registry import WORKFLOWS
from workflows.versioned import VERSIONED
from workflows.versioned import IncidentResponseWorkflow as PinnedIncident
from workflows.versioned import PostIncidentWorkflow as MovingPostIncident

WORKFLOWS_DIR = ROOT / "workflows"
PATCH_CALL = re.compile(r"\b(?:patched|deprecate_patch)\(\s*[\"']([^\"']+)[\"']")


def test_every_patch_is_in_the_table_and_only_where_runs_move_between_builds():
    """A PINNED workflow never needs a patch; an AUTO_UPGRADE one registers each."""
    auto = {w.__mro__[1].__module__.rsplit(".", 1)[-1] for w in VERSIONED
            if getattr(w, "__temporal_workflow_definition").versioning_behavior == VersioningBehavior.AUTO_UPGRADE}
    assert auto == {"post_incident", "blast_radius"}
    found: dict[str, str] = {}
    for path in WORKFLOWS_DIR.rglob("*.py"):
        for pid in PATCH_CALL.findall(path.read_text()):
            # a workflow's own module, or one of its parts (post_incident_deadlines.py)
            found[pid] = next((m for m in auto if path.stem == m or path.stem.startswith(f"{m}_")), path.stem)
    assert set(found) <= set(PATCHES), f"patches missing from workflows.patches: {set(found) - set(PATCHES)}"
    assert all(module in auto for module in found.values()), f"a patch in a PINNED workflow: {found}"
    assert set(PATCHES) <= set(found), "a patch in the table that no workflow uses any more: remove its entry"
    assert all(p.since > "1.0" for p in PATCHES.values()), "1.0 is the baseline: no patch predates it"


def test_a_versioned_worker_declares_a_behaviour_for_every_workflow_type():
    assert [w.__name__ for w in VERSIONED] == [w.__name__ for w in WORKFLOWS]
    for w in VERSIONED:
        assert getattr(w, "__temporal_workflow_definition").versioning_behavior != VersioningBehavior.UNSPECIFIED, w


async def _check(client: Client, deployment: str, build: str, *flags: str):
    env = {"TEMPORAL_ADDRESS": client.service_client.config.target_host, "CODEBLUE_DEPLOYMENT_NAME": deployment}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return await asyncio.to_thread(codeblue, "upgrade", "check", "--build-id", build, *(flags or ("--json",)))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def test_pinned_incidents_keep_their_build_and_a_run_that_does_not_replay_blocks_the_roll_out():
    from starters.devserver import dev_server

    deployment, old = f"codeblue-{uuid.uuid4().hex[:6]}", "1.0.0+old"
    async with dev_server(interceptors=signing_interceptors()) as env:
        client = env.client
        tq = f"tq-{uuid.uuid4().hex[:6]}"
        versioned = WorkerDeploymentConfig(version=WorkerDeploymentVersion(deployment_name=deployment, build_id=old),
                                           use_worker_versioning=True)
        async with Worker(client, task_queue=tq, deployment_config=versioned, workflows=[PinnedIncident, MovingPostIncident],
                          activities=incident_worker(World())["activities"]):
            assert await adopt_if_first(client, versioned) == "current (the deployment's first build)"
            inp: IncidentInput = incident()
            h = await service.start_incident(client, inp, tq)
            await until(h, lambda r: any(a.state.value == "proposed" for a in r.actions), "proposals")
            desc = await h.describe()
            info = desc.raw_description.workflow_execution_info.versioning_info
            assert info.deployment_version.build_id == old
            assert info.behavior == 1  # VERSIONING_BEHAVIOR_PINNED

            # a second build never makes itself current: the operator does, after the check
            later = WorkerDeploymentConfig(version=WorkerDeploymentVersion(deployment_name=deployment, build_id="1.0.0+new"),
                                           use_worker_versioning=True)
            async with Worker(client, task_queue=tq, deployment_config=later, workflows=[PinnedIncident, MovingPostIncident],
                              activities=incident_worker(World())["activities"]):
                assert await adopt_if_first(client, later) == f"waiting: {old} is current"

            done = await _check(client, deployment, "1.0.0+new")
            assert done.returncode == 0, done.stderr
            res = json.loads(done.stdout)
            mine = [r for r in res["open_runs"] if r["workflow_id"] == inp.incident_id]
            assert mine and mine[0]["behavior"] == "pinned" and mine[0]["build_id"] == old
            assert res["keep_builds"] == {old: 1} and res["can_roll_out"] is True
            said = (await _check(client, deployment, "1.0.0+new", "--build-id", "1.0.0+new")).stdout  # as a person reads it
            assert f"keep build {old}'s workers: 1 pinned runs open on it" in said and "can roll out 1.0.0+new: yes" in said

            # a run that would move to the new build, recorded by other code: the new build must not take it
            other_tq = f"tq-{uuid.uuid4().hex[:6]}"
            async with Worker(client, task_queue=other_tq, workflows=[ForeignPostIncident]):
                rep = resolved_report()
                moved = await client.start_workflow(
                    "PostIncidentWorkflow", PostIncidentInput(incident_id=rep.incident_id, report=rep, requested_by="alice"),
                    id=f"{rep.incident_id}-postmortem", task_queue=other_tq)
                await until(moved.fetch_history, lambda hist: len(hist.events) >= 5, "the foreign run's first task",
                            timeout=10)
                blocked = await _check(client, deployment, "1.0.0+new")
                await moved.terminate("test done")
            assert blocked.returncode == 1
            res = json.loads(blocked.stdout)
            assert list(res["replay_failures"]) == [moved.id] and res["can_roll_out"] is False
            await h.terminate("test done")
