"""The same workflow types, declared with their Worker Versioning behaviour, for a worker that
runs as a version of a Worker Deployment (worker.versioning; README, "Upgrades").

Classes apart because the SDK sends a declared behaviour with every workflow task, and the
server refuses it from a worker that is not versioned (checked on the dev server 1.32): the
drills, the tests and a single dev worker register `workflows.registry.WORKFLOWS` instead.
Each class only declares (the SDK wants `run` on the class itself); the sandbox imports it
from this module.

PINNED: a run finishes on the build that started it (all of these finish within hours), so
their code changes need no patch. AUTO_UPGRADE: the post-incident workflow waits days for
action items; it moves to each new build, so a change to its commands goes behind a patch
registered in `workflows.patches`.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from domain.blast_radius import GuardInput
    from domain.database_restore import DatabaseRestoreInput
    from domain.db_connections import DbConnectionsInput
    from domain.high_memory import MemoryInput
    from domain.incident import IncidentInput, IncidentReport
    from domain.post_incident import PostIncidentInput
    from domain.redis_cache import CacheInput
    from domain.service_recovery import RecoveryInput
    from workflows import (
        blast_radius,
        database_restore,
        db_connections,
        high_memory,
        incident_response,
        post_incident,
        redis_cache,
        service_recovery,
    )

PINNED = VersioningBehavior.PINNED
AUTO_UPGRADE = VersioningBehavior.AUTO_UPGRADE


@workflow.defn(name="IncidentResponseWorkflow", versioning_behavior=PINNED)
class IncidentResponseWorkflow(incident_response.IncidentResponseWorkflow):
    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentReport:
        return await super().run(inp)


@workflow.defn(name="ServiceRecoveryWorkflow", versioning_behavior=PINNED)
class ServiceRecoveryWorkflow(service_recovery.ServiceRecoveryWorkflow):
    @workflow.run
    async def run(self, inp: RecoveryInput) -> IncidentReport:
        return await super().run(inp)


@workflow.defn(name="DatabaseRestoreWorkflow", versioning_behavior=PINNED)
class DatabaseRestoreWorkflow(database_restore.DatabaseRestoreWorkflow):
    @workflow.run
    async def run(self, inp: DatabaseRestoreInput) -> IncidentReport:
        return await super().run(inp)


@workflow.defn(name="RedisCachePlaybook", versioning_behavior=PINNED)
class RedisCachePlaybook(redis_cache.RedisCachePlaybook):
    @workflow.run
    async def run(self, inp: CacheInput) -> IncidentReport:
        return await super().run(inp)


@workflow.defn(name="HighMemoryPlaybook", versioning_behavior=PINNED)
class HighMemoryPlaybook(high_memory.HighMemoryPlaybook):
    @workflow.run
    async def run(self, inp: MemoryInput) -> IncidentReport:
        return await super().run(inp)


@workflow.defn(name="DatabaseConnectionPlaybook", versioning_behavior=PINNED)
class DatabaseConnectionPlaybook(db_connections.DatabaseConnectionPlaybook):
    @workflow.run
    async def run(self, inp: DbConnectionsInput) -> IncidentReport:
        return await super().run(inp)


@workflow.defn(name="PostIncidentWorkflow", versioning_behavior=AUTO_UPGRADE)
class PostIncidentWorkflow(post_incident.PostIncidentWorkflow):
    @workflow.run
    async def run(self, inp: PostIncidentInput) -> IncidentReport:
        return await super().run(inp)


# the blast-radius guard lives as long as its workers: each build takes it over (its changes
# behind a patch, like the post-incident's)
@workflow.defn(name="BlastRadiusGuard", versioning_behavior=AUTO_UPGRADE)
class BlastRadiusGuard(blast_radius.BlastRadiusGuard):
    @workflow.run
    async def run(self, inp: GuardInput) -> None:
        return await super().run(inp)


VERSIONED: list[type] = [
    IncidentResponseWorkflow, ServiceRecoveryWorkflow, PostIncidentWorkflow, DatabaseRestoreWorkflow,
    RedisCachePlaybook, HighMemoryPlaybook, DatabaseConnectionPlaybook, BlastRadiusGuard,
]
