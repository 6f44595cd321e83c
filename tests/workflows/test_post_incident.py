"""Post-incident: the 24-hour post-mortem clock, action items, verification and closing comms."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from domain.config import CodeBlueConfig
from domain.incident import TimelineKind
from domain.post_incident import CloseActionItem, NewActionItem, PostmortemHeld, postmortem_workflow_id
from sandbox.memory_world import PostWorld
from tests.support.polling import until
from tests.support.post_incident import (
    child_ready,
    commander_pages,
    config,
    healthy,
    post_input,
    post_worker,
    skip_hours,
    start_post,
)
from tests.support.workflows import entries, kinds, kinds_after, skip
from worker.temporal import replayer
from workflows.post_incident import PostIncidentWorkflow


async def _server_date(h):
    return (await h.describe()).start_time.date()


async def test_reminds_ic_at_12h_and_20h_and_pages_manager_at_24h_when_not_held(skipping_env):
    pw = healthy()
    async with post_worker(skipping_env, pw) as tq:
        h = await start_post(skipping_env, pw, tq)
        await child_ready(skipping_env, h)
        assert len(pw.invites) == 1
        # the invitation is public text: the incident's ID and service, never its (internal) title
        invite = pw.invites[0]
        assert "crash-looping" not in invite.summary + invite.description and "(api-gateway)" in invite.summary
        await skip_hours(skipping_env, 11.5)
        assert commander_pages(pw.world) == []
        await skip_hours(skipping_env, 1)
        assert commander_pages(pw.world) == ["postmortem-remind-12h"]
        await skip_hours(skipping_env, 7.5)  # 20:00 passes
        assert commander_pages(pw.world) == ["postmortem-remind-12h", "postmortem-remind-20h"]
        assert pw.world.pages_to("engineering_manager") == []
        await skip_hours(skipping_env, 4)  # 24:00 passes
        em = pw.world.pages_to("engineering_manager")
        assert [p.dedup_key.split(":")[-1] for p in em] == ["postmortem-overdue"]
        assert "not held within 24 h" in em[0].summary
        # held late: the workflow (no action items) completes
        await h.execute_update(PostIncidentWorkflow.postmortem_held, PostmortemHeld(by="alice"))
        rep = await h.result()
        p = await h.query(PostIncidentWorkflow.progress)
    assert p.held_by == "alice" and p.done
    assert [e.actor for e in entries(rep, TimelineKind.POST_INCIDENT)][-2:] == ["alice", "codeblue"]  # held late, then complete
    assert (rep.timeline[-1].kind, rep.timeline[-1].actor) == (TimelineKind.POST_INCIDENT, "codeblue")
    assert len(pw.world.pages_to("engineering_manager")) == 1


async def test_no_reminders_once_held_and_completes_when_items_are_done(skipping_env):
    pw = healthy()
    async with post_worker(skipping_env, pw) as tq:
        h = await start_post(skipping_env, pw, tq)
        await child_ready(skipping_env, h)
        due = await _server_date(h) + timedelta(days=30)
        a1 = await h.execute_update(
            PostIncidentWorkflow.add_action_item, NewActionItem(text="add a canary stage", owner="carol", due=due, by="alice")
        )
        a2 = await h.execute_update(
            PostIncidentWorkflow.add_action_item, NewActionItem(text="alert on crash loops", owner="dave", due=due, by="alice")
        )
        assert (a1.id, a2.id) == ("AI-1", "AI-2")
        await h.signal(PostIncidentWorkflow.postmortem_held_signal, PostmortemHeld(by="alice", notes="root cause: config"))
        await skip_hours(skipping_env, 25)
        assert commander_pages(pw.world) == [] and pw.world.pages_to("engineering_manager") == []
        p = await until(h, lambda p: p.held_by == "alice", "held", query=PostIncidentWorkflow.progress)
        assert not p.done  # items still open
        await h.execute_update(PostIncidentWorkflow.complete_action_item, CloseActionItem(item_id="AI-1", by="carol"))
        # only the IC may defer, and only with a reason
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await h.execute_update(
                PostIncidentWorkflow.complete_action_item, CloseActionItem(item_id="AI-2", by="dave", defer=True, reason="later")
            )
        assert "only the incident commander (alice)" in str(e.value.cause)
        with pytest.raises(WorkflowUpdateFailedError):
            await h.execute_update(PostIncidentWorkflow.complete_action_item, CloseActionItem(item_id="AI-1", by="carol"))
        await h.execute_update(
            PostIncidentWorkflow.complete_action_item,
            CloseActionItem(item_id="AI-2", by="alice", defer=True, reason="next quarter's alerting project"),
        )
        rep = await h.result()
        draft = await h.query(PostIncidentWorkflow.postmortem)
        history = await h.fetch_history()
    assert (rep.timeline[-1].kind, rep.timeline[-1].actor) == (TimelineKind.POST_INCIDENT, "codeblue")  # complete
    assert "| AI-1 | add a canary stage | carol |" in draft and "deferred (next quarter's alerting project)" in draft
    replay = await replayer([PostIncidentWorkflow]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert replay.replay_failure is None, replay.replay_failure


async def test_overdue_action_item_reminds_its_owner_daily(skipping_env):
    pw = healthy()
    async with post_worker(skipping_env, pw) as tq:
        h = await start_post(skipping_env, pw, tq)
        await child_ready(skipping_env, h)
        yesterday = await _server_date(h) - timedelta(days=1)
        await h.execute_update(
            PostIncidentWorkflow.add_action_item, NewActionItem(text="fix the readiness probe", owner="erin", due=yesterday, by="alice")
        )
        def reminded(n: int):  # counted when the reminder is due, sent once its activity completes
            return lambda p: p.items[0].reminders == n and len([m for m in pw.world.messages if m.kind == "reminder"]) == n

        await until(h, reminded(1), "first overdue reminder", query=PostIncidentWorkflow.progress)
        reminders = [m for m in pw.world.messages if m.kind == "reminder"]
        assert len(reminders) == 1 and reminders[0].text.startswith("@erin: action item AI-1")
        await skip_hours(skipping_env, 23)
        assert len([m for m in pw.world.messages if m.kind == "reminder"]) == 1
        await skip_hours(skipping_env, 1.5)
        await until(h, reminded(2), "the next day's reminder", query=PostIncidentWorkflow.progress)
        await h.execute_update(PostIncidentWorkflow.complete_action_item, CloseActionItem(item_id="ai-1", by="erin"))
        await h.execute_update(PostIncidentWorkflow.postmortem_held, PostmortemHeld(by="alice"))
        await h.result()


async def test_verification_failure_pages_ic_and_opens_a_linked_incident(skipping_env):
    pw = PostWorld()  # still crash-looping
    async with post_worker(skipping_env, pw) as tq:
        h = await start_post(skipping_env, pw, tq, cfg=config(smoke_checks=[{"name": "login", "url": "http://x/login"}]))
        pw.smoke_ok = False
        await skip(skipping_env, 2)
        p = await until(h, lambda p: p.reopened is not None, "reopen", query=PostIncidentWorkflow.progress)
        assert p.verification is not None and not p.verification.ok
        problems = " ".join(p.verification.problems)
        assert "pods not ready" in problems and "health endpoint" in problems and "smoke check login failed" in problems
        assert commander_pages(pw.world) == ["verification-failed"]
        iid = h.id.removesuffix("-postmortem")
        assert p.reopened == f"{iid} had closed; opened linked incident {iid}-reopened"
        child = skipping_env.client.get_workflow_handle(f"{iid}-reopened")
        pw.world.handles.insert(0, child)
        desc = await child.describe()
        assert desc.workflow_type == "IncidentResponseWorkflow"
        rep = await h.query(PostIncidentWorkflow.status)
        assert rep.status == "reopened" and rep.verified is False
        # the closing-communications step is recorded after the reopen, and (below) nothing went out
        assert kinds_after(rep, TimelineKind.OPENED)[0] == TimelineKind.NOTIFICATION
        assert [u for u in pw.world.status_updates if u.status == "resolved"] == []  # nothing said "resolved"
        assert not [m for m in pw.world.messages if m.kind == "channel_close"]


async def test_closing_comms_reach_the_receiver_in_order(skipping_env):
    """Real notifier, health, smoke and calendar activities over HTTP to the local receiver."""
    from activities.health import HealthActivities
    from activities.notify import NotifierActivities
    from activities.post_incident import PostIncidentActivities
    from domain.config import CodeBlueConfig, HealthConfig, PostIncidentConfig
    from sandbox.receiver import Receiver

    pw = healthy()
    async with Receiver(health=lambda: True) as r:
        pic = PostIncidentConfig(
            health_probes=2, probe_interval_seconds=60, calendar_webhook_url=f"{r.webhook_url}/calendar",
            smoke_checks=[{"name": "health", "url": r.health_url}],
        )
        cfg = CodeBlueConfig(notifications=r.notification_config(), health=HealthConfig(url=r.health_url), postincident=pic)
        notify = NotifierActivities(cfg.notifications)
        health = HealthActivities(pause_seconds=0)
        post = PostIncidentActivities(pic)
        real = [notify.page, notify.status_page, notify.post_message, health.probe_health, post.smoke_check, post.schedule_postmortem]
        try:
            async with post_worker(skipping_env, pw, replace=real) as tq:
                h = await start_post(skipping_env, pw, tq, cfg=cfg)
                await child_ready(skipping_env, h)
                await h.execute_update(PostIncidentWorkflow.postmortem_held, PostmortemHeld(by="alice"))
                rep = await h.result()
        finally:
            for a in (notify, health, post):
                await a.aclose()
        applied = [c for c in r.calls if c.applied]
    steps = []
    for c in applied:
        if c.channel == "statuspage":
            steps.append(f"statuspage:{c.json['incident']['status']}")
        elif c.channel == "slack":
            steps.append("slack")
        elif c.channel == "webhook":
            steps.append(f"webhook:{c.json.get('kind') or c.path}")
    assert steps == ["statuspage:resolved", "slack", "webhook:channel_close", "webhook:/webhook/calendar"]
    invite = applied[-1].json
    roles = [a["role"] for a in invite["attendees"]]
    assert roles == ["incident_commander", "on_call", "engineering_manager", "devops_lead"]
    assert invite["attendees"][0]["name"] == "alice"
    assert len(r.calls_to("health")) == 2 * 3 + 1  # two probes of three attempts, one smoke check
    assert rep.verified is True and len(entries(rep, TimelineKind.VERIFICATION)) == 1


async def test_draft_from_a_real_incident_run_has_timeline_approvers_and_slas(skipping_env):
    from domain.incident import Resolution
    from starters import service
    from tests.support.workflows import decide_all, incident, start, worker_for

    pw = PostWorld()
    world = pw.world
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, incident(), tq)
        await decide_all(skipping_env, h, {"rollback"}, reason="rollback is enough")
        world.healthy = True
        await service.resolve(skipping_env.client, h.id, Resolution(by="alice", summary="rolled back to 11"))
        report = await h.result()
        # resolving started the post-incident work as a child that outlives the incident
        assert report.postmortem_workflow_id == postmortem_workflow_id(h.id)
        assert [e.actor for e in entries(report, TimelineKind.POST_INCIDENT)] == ["codeblue"]  # started
        ph = skipping_env.client.get_workflow_handle_for(PostIncidentWorkflow.run, postmortem_workflow_id(h.id))
        world.handles.append(ph)
        await child_ready(skipping_env, ph)
        draft = await ph.query(PostIncidentWorkflow.postmortem)
    assert report.timeline and len(report.actions) >= 2
    for e in report.timeline:
        assert " ".join(e.event.split()) in draft, e.event
    assert "**rollback** (helm_rollback) — approved by **alice** at " in draft
    for a in report.actions:
        if a.id != "rollback":
            assert f"**{a.id}** ({a.kind.value}) — rejected by **alice** at " in draft
    assert "| diagnostics | 5:00 | met |" in draft and "| assessment | 15:00 | met |" in draft
    assert "## Root cause" in draft and "Resolution verified" in draft
    assert "Recent deploy:** revision 12" in draft


async def test_continues_as_new_and_keeps_items_reminders_and_clock(skipping_env):
    pw = healthy()
    async with post_worker(skipping_env, pw) as tq:
        first = await start_post(skipping_env, pw, tq, cfg=config(max_history_events=40))
        h = skipping_env.client.get_workflow_handle_for(PostIncidentWorkflow.run, first.id)  # follows new runs
        await child_ready(skipping_env, first)
        due = await _server_date(first) + timedelta(days=30)
        for i in range(6):
            await h.execute_update(
                PostIncidentWorkflow.add_action_item, NewActionItem(text=f"item {i}", owner="carol", due=due, by="alice")
            )
        await skip_hours(skipping_env, 12.5)
        p = await until(h, lambda p: len(p.items) == 6, "items carried over", query=PostIncidentWorkflow.progress)
        assert [i.id for i in p.items] == [f"AI-{n}" for n in range(1, 7)]
        assert (await h.describe()).run_id != first.result_run_id
        await skip_hours(skipping_env, 8)
        assert commander_pages(pw.world) == ["postmortem-remind-12h", "postmortem-remind-20h"]  # once each
        await h.execute_update(PostIncidentWorkflow.postmortem_held, PostmortemHeld(by="alice"))
        for i in range(1, 7):
            await h.execute_update(PostIncidentWorkflow.complete_action_item, CloseActionItem(item_id=f"AI-{i}", by="carol"))
        rep = await h.result()
    assert TimelineKind.CONTINUED in kinds(rep)
    # started once (not again in the new run), complete at the end; verified once
    assert [e.actor for e in entries(rep, TimelineKind.POST_INCIDENT, actor="codeblue")] == ["codeblue", "codeblue"]
    assert len(entries(rep, TimelineKind.VERIFICATION)) == 1
    assert (rep.timeline[-1].kind, rep.timeline[-1].actor) == (TimelineKind.POST_INCIDENT, "codeblue")


async def test_verification_failure_signals_a_still_open_incident(skipping_env):
    from tests.support.workflows import incident, proposed, start

    pw = PostWorld()
    async with post_worker(skipping_env, pw) as tq:
        inc = await start(skipping_env, pw.world, incident(), tq)
        await until(inc, proposed, "proposals")  # open, waiting for the IC
        from tests.support.post_incident import resolved_report

        h = await start_post(skipping_env, pw, tq, report=resolved_report(inc.id))
        await skip(skipping_env, 2)
        p = await until(h, lambda p: p.reopened is not None, "reopen", query=PostIncidentWorkflow.progress)
        assert p.reopened == f"signalled incident {inc.id} to reopen"
        assert commander_pages(pw.world) == ["verification-failed"]
        # the open incident records why on its own timeline
        await until(inc, lambda r: bool(entries(r, TimelineKind.POST_INCIDENT)), "reopen noted")


async def test_started_as_a_child_it_outlives_the_resolving_parent(skipping_env):
    import uuid

    from temporalio.client import WorkflowExecutionStatus
    from temporalio.worker import Worker

    from tests.support.post_incident import resolved_report
    from tests.support.post_incident_parent import ResolvingParent

    pw = healthy()
    rep = resolved_report()
    tq = f"pp-{uuid.uuid4().hex[:8]}"
    async with Worker(skipping_env.client, task_queue=tq, workflows=[ResolvingParent, PostIncidentWorkflow], activities=pw.activities()):
        wid = await skipping_env.client.execute_workflow(
            ResolvingParent.run, post_input(rep),
            id=f"{rep.incident_id}-parent", task_queue=tq,
        )
        assert wid == f"{rep.incident_id}-postmortem"
        child = skipping_env.client.get_workflow_handle_for(PostIncidentWorkflow.run, wid)
        pw.world.handles.append(child)
        await child_ready(skipping_env, child)
        assert (await child.describe()).status == WorkflowExecutionStatus.RUNNING
        await child.execute_update(PostIncidentWorkflow.postmortem_held, PostmortemHeld(by="alice"))
        assert (await child.result()).incident_id == rep.incident_id


def _with_prometheus(**pi) -> CodeBlueConfig:
    from domain.prometheus import AnalysisConfig, PrometheusConfig

    cfg = config(health_probes=1, **pi)
    cfg.prometheus = PrometheusConfig(url="http://prometheus.invalid:9090",
                                      analysis=AnalysisConfig(interval_seconds=30, count=4, successes=2, failure_limit=1))
    return cfg


async def test_verification_fails_on_an_sli_breach_and_passes_once_it_clears(skipping_env):
    from sandbox.memory_world import BREACHING_SLIS, HEALTHY_SLIS
    from tests.support.post_incident import resolved_report

    # pods, deployments, logs and the health endpoint are all fine: only the SLIs breach
    pw = healthy()
    pw.world.slis = dict(BREACHING_SLIS)
    async with post_worker(skipping_env, pw) as tq:
        h = await start_post(skipping_env, pw, tq, cfg=_with_prometheus())
        await skip(skipping_env, 3)  # the readings are 30 s apart on durable timers
        p = await until(h, lambda p: p.verification is not None, "verification", query=PostIncidentWorkflow.progress)
        assert p.verification is not None
        assert not p.verification.ok
        problem = " ".join(p.verification.problems)
        assert problem.startswith("SLI analysis failed: 2 readings breached") and "5xx ratio 0.31" in problem, problem
        assert commander_pages(pw.world) == ["verification-failed"]

    # the same resolution once the error ratio and latency are back under their limits
    pw = healthy()
    pw.world.slis = dict(HEALTHY_SLIS)
    report = resolved_report()
    report.assessment["slis"] = [{"name": "5xx ratio", "query": "q", "value": 0.31, "threshold": 0.05, "comparison": "<",
                                  "unit": "", "ok": False, "error": None, "when": "assessment"}]
    async with post_worker(skipping_env, pw) as tq:
        h = await start_post(skipping_env, pw, tq, report=report, cfg=_with_prometheus())
        await skip(skipping_env, 3)  # the readings are 30 s apart on durable timers
        p = await until(h, lambda p: p.verification is not None, "verification", query=PostIncidentWorkflow.progress)
        assert p.verification is not None
        assert p.verification.ok, p.verification.problems
        assert any(c.startswith("SLI analysis passed") for c in p.verification.checks)
        draft = await h.query(PostIncidentWorkflow.postmortem)
        assert "## SLIs before, during and after" in draft
        assert "| 5xx ratio | 0.004 | 0.31 | 0.004 | < 0.05 |" in draft  # before the onset, at assessment, verified
