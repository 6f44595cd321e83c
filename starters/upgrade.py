"""`codeblue upgrade check`: may this build roll out, and which older builds must keep running?

Worker Versioning (README, "Upgrades") pins the incident, the playbooks, the restore and the
redeploy to the build that started them, and moves the post-incident workflow (AUTO_UPGRADE)
to each new build. So a new build can take over only if it replays every open run that will
move to it: the AUTO_UPGRADE runs and those started by unversioned workers. The check replays
each such run's history against this code, and says which builds still have pinned runs open.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio.api.enums.v1 import VersioningBehavior as WireBehavior
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client
from temporalio.service import RPCError

from worker.temporal import replayer
from worker.versioning import build_id
from workflows.patches import PATCHES
from workflows.registry import WORKFLOWS

OPEN = 'ExecutionStatus = "Running"'
MOVES = ("auto_upgrade", "unversioned")  # the runs a new current build takes over


@dataclass
class OpenRun:
    workflow_id: str
    run_id: str
    workflow_type: str
    behavior: str  # pinned, auto_upgrade, unversioned
    build: str | None  # the deployment version's build ID; None for an unversioned run
    started: datetime | None


@dataclass
class PatchState:
    patch_id: str
    since: str
    needed: bool
    why: str


@dataclass
class UpgradeCheck:
    build: str
    runs: list[OpenRun] = field(default_factory=list)
    replay_failures: dict[str, str] = field(default_factory=dict)  # workflow ID -> why
    patches: list[PatchState] = field(default_factory=list)

    @property
    def can_roll_out(self) -> bool:
        return not self.replay_failures

    def pinned_elsewhere(self) -> Counter[str]:
        return Counter(r.build or "?" for r in self.runs if r.behavior == "pinned" and r.build != self.build)

    def to_json(self) -> dict:
        return {
            "build_id": self.build,
            "can_roll_out": self.can_roll_out,
            "open_runs": [{"workflow_id": r.workflow_id, "run_id": r.run_id, "type": r.workflow_type,
                           "behavior": r.behavior, "build_id": r.build,
                           "started_at": r.started.isoformat() if r.started else None} for r in self.runs],
            "replay_failures": self.replay_failures,
            "keep_builds": dict(self.pinned_elsewhere()),
            "keep_unversioned_worker": any(r.behavior == "unversioned" for r in self.runs),
            "patches": [{"id": p.patch_id, "since": p.since, "needed": p.needed, "why": p.why} for p in self.patches],
        }


def _behavior(raw: WireBehavior.ValueType, versioned: bool) -> str:
    if raw == WireBehavior.VERSIONING_BEHAVIOR_PINNED:
        return "pinned"
    if raw == WireBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE:
        return "auto_upgrade"
    return "auto_upgrade" if versioned else "unversioned"


async def open_runs(client: Client) -> list[OpenRun]:
    ours = {w.__name__ for w in WORKFLOWS}
    runs = []
    async for wf in client.list_workflows(OPEN):
        if wf.workflow_type not in ours:
            continue
        # a listing carries no versioning info: each open run is described
        desc = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
        vi = desc.raw_description.workflow_execution_info.versioning_info
        versioned = bool(vi.deployment_version.build_id)
        runs.append(OpenRun(
            workflow_id=wf.id, run_id=wf.run_id, workflow_type=wf.workflow_type,
            behavior=_behavior(vi.behavior, versioned),
            build=vi.deployment_version.build_id or None, started=wf.start_time,
        ))
    return runs


async def _release_since(client: Client, deployment: str | None, release: str) -> datetime | None:
    """When the first build of `release` was created in the deployment (None: unknown)."""
    if not deployment:
        return None
    try:
        resp = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment))
    except RPCError:
        return None
    times = [v.create_time.ToDatetime(tzinfo=UTC) for v in resp.worker_deployment_info.version_summaries
             if v.deployment_version.build_id.split("+")[0].startswith(release)]
    return min(times) if times else None


async def check(client: Client, deployment: str | None, new_build: str | None = None) -> UpgradeCheck:
    result = UpgradeCheck(build=new_build or build_id(), runs=await open_runs(client))
    moving = [r for r in result.runs if r.behavior in MOVES or (r.behavior == "pinned" and r.build == result.build)]
    rep = replayer(WORKFLOWS)
    for r in moving:
        history = await client.get_workflow_handle(r.workflow_id, run_id=r.run_id).fetch_history()
        done = await rep.replay_workflow(history, raise_on_replay_failure=False)
        if done.replay_failure is not None:
            result.replay_failures[r.workflow_id] = str(done.replay_failure).splitlines()[0][:300]
    for pid, p in sorted(PATCHES.items()):
        since = await _release_since(client, deployment, p.since)
        older = [r for r in result.runs if r.behavior in MOVES and r.started and (since is None or r.started < since)]
        if since is None:
            why = f"release {p.since} not found in the deployment: kept while any moving run is open ({len(older)})"
        else:
            why = f"{len(older)} open moving runs started before release {p.since} ({since:%Y-%m-%d})"
        result.patches.append(PatchState(patch_id=pid, since=p.since, needed=bool(older), why=why))
    return result
