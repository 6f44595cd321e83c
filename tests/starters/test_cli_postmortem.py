"""`codeblue postmortem` and `codeblue action-item` against the dev server, as the IC uses them."""

from __future__ import annotations

import uuid

from temporalio.worker import Worker

from domain.incident import Decision, Resolution, TimelineKind
from domain.post_incident import postmortem_workflow_id
from sandbox.memory_world import PostWorld
from starters import service
from tests.support.cli import cb, one_line_error
from tests.support.polling import until
from tests.support.post_incident import config
from tests.support.workflows import incident, proposed
from workflows.incident_response import IncidentResponseWorkflow
from workflows.post_incident import PostIncidentWorkflow


async def test_postmortem_and_action_items_from_the_cli(dev_env):
    pw = PostWorld()
    pw.world.config = config(probe_interval_seconds=1)
    tq = f"clipm-{uuid.uuid4().hex[:6]}"
    env = {"TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host, "TEMPORAL_TASK_QUEUE": tq}
    async with Worker(
        dev_env.client, task_queue=tq, workflows=[IncidentResponseWorkflow, PostIncidentWorkflow], activities=pw.activities()
    ):
        inp = incident()
        iid = inp.incident_id
        h = await service.start_incident(dev_env.client, inp, tq)
        rep = await until(h, proposed, "proposals", timeout=30)
        for a in rep.actions:
            ok = a.id == "rollback"
            await service.decide(dev_env.client, iid, Decision(action_id=a.id, approve=ok, by="alice", reason=None if ok else "no"))
        pw.world.healthy = True
        await service.resolve(dev_env.client, iid, Resolution(by="alice", summary="rolled back"))
        await h.result()

        # resolving the incident started its post-incident work; starting it again is refused
        code, out, err = await cb("postmortem", iid, env=env)
        assert code == 0, err
        assert out.startswith(f"# Post-mortem: {iid}") and "approved by **alice**" in out
        code, _, err = await cb("postmortem", "start", iid, env=env)
        assert code == 1 and "already exists" in one_line_error(err)
        code, _, err = await cb("action-item", "add", "INC-NOPE-1", "--owner", "carol", "--due", "2099-01-01", "x", env=env)
        assert code == 1 and "no post-incident work for INC-NOPE-1" in one_line_error(err)

        code, out, err = await cb(
            "action-item", "add", iid, "--owner", "carol", "--due", "2099-01-01", "--by", "alice", "add", "a", "canary", env=env
        )
        assert code == 0 and out.strip() == "AI-1: carol, due 2099-01-01", err
        code, _, err = await cb("action-item", "done", iid, "AI-9", "--by", "carol", env=env)
        assert code == 1 and "unknown action item 'AI-9'" in one_line_error(err)
        code, out, err = await cb("postmortem", "held", iid, "--by", "alice", env=env)
        assert code == 0 and "held by alice" in out, err

        ph = dev_env.client.get_workflow_handle_for(PostIncidentWorkflow.run, postmortem_workflow_id(iid))
        await until(ph, lambda p: p.scheduled_slot is not None, "verified and scheduled", timeout=30, query=PostIncidentWorkflow.progress)
        code, out, err = await cb("action-item", "done", iid, "AI-1", "--by", "carol", env=env)
        assert code == 0 and out.strip() == "AI-1: done", err
        final = await ph.result()
        assert (final.timeline[-1].kind, final.timeline[-1].actor) == (TimelineKind.POST_INCIDENT, "codeblue")  # complete
        assert (await ph.query(PostIncidentWorkflow.progress)).done

        code, out, err = await cb("postmortem", iid, env=env)
        assert code == 0, err
        assert "| AI-1 | add a canary | carol | 2099-01-01 | done |" in out and "Resolution verified" in out
        code, _, err = await cb("action-item", "add", iid, "--owner", "x", "--due", "2099-01-01", "y", env=env)
        assert code == 1 and "complete" in one_line_error(err)
