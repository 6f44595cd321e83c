"""A post-incident run recorded by other code: its commands are not the ones this code issues
(tests/workflows/test_upgrade_policy.py). A module of its own: the workflow sandbox re-imports it."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.post_incident import PostIncidentInput


@workflow.defn(name="PostIncidentWorkflow")  # unversioned: it moves to whichever build is current
class ForeignPostIncident:
    @workflow.run
    async def run(self, inp: PostIncidentInput) -> None:
        await workflow.sleep(3600)
