"""The runbook's "Create incident channel": with a Slack bot token on the worker, a P0/P1 incident
opens its own channel through the Web API (activity `slack_open_channel`: the IC and responders,
a public topic, the Temporal UI bookmarked), recorded on the timeline and in the report; without
one, the webhook message as before; a Slack failure is a failed step, never a failed incident.
Fake activities (the memory world), time-skipping server."""

from __future__ import annotations

import asyncio

from domain.config import CodeBlueConfig, LimitsConfig, MitigationConfig, SlackConfig, UiConfig
from domain.incident import ActionState, Note, Resolution, TimelineKind
from domain.slack import channel_name
from sandbox.memory_world import World, configure_worker
from starters import service
from tests.support.polling import until
from tests.support.workflows import action, decide_all, entries, entry, events, incident, start, worker_for

TITLE = "Jane Roe's allergies shown on another chart"  # an incident title may name a patient


def with_bot(**kw) -> CodeBlueConfig:
    return CodeBlueConfig(ui=UiConfig(base_url="https://temporal.example/"),
                          mitigation=MitigationConfig(approvers=["carol"]),
                          slack=SlackConfig(bot_token_set=True, users={"UALICE": "alice"}), **kw)


async def test_with_a_bot_token_the_incident_opens_its_own_channel(skipping_env):
    world = World()
    inp = incident("P0", title=TITLE)
    configure_worker(inp.incident_id, with_bot())
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, lambda r: r.phase.value == "mitigation", "mitigation")
        (req,) = world.channels
        assert (req.incident_id, req.severity, req.service) == (inp.incident_id, "P0", "api-gateway")
        assert [(p.name, p.role) for p in req.people] == [("alice", "IC"), ("carol", "approver"),
                                                          ("+1-555-0123", "on-call")]
        assert req.link == f"https://temporal.example/namespaces/default/workflows/{inp.incident_id}"
        assert "Jane" not in req.model_dump_json()  # the title never travels to Slack
        # instead of the webhook message, not beside it
        assert not [m for m in world.messages if m.kind == "channel_open"]
        assert [m.kind for m in world.messages] == ["stakeholders"]
        name = channel_name(inp.incident_id)
        assert rep.slack_channel is not None and rep.slack_channel.name == name
        step = entry(rep, "Create incident channel")
        assert step.kind == TimelineKind.NOTIFICATION and step.result is not None
        assert step.result.startswith(f"#{name} ({rep.slack_channel.id}) created; invited alice (IC)")
        assert "no Slack ID, not invited: carol (approver), +1-555-0123 (on-call)" in step.result

        await decide_all(skipping_env, h, {"rollback"})
        await until(h, lambda r: action(r, "rollback").state == ActionState.EXECUTED, "rollback")
        await service.resolve(skipping_env.client, h.id, Resolution(by="alice", summary="rolled back"))
        final = await h.result()
        assert len(world.channels) == 1  # opened once
        assert final.slack_channel == rep.slack_channel  # in the report's JSON too
        assert final.model_dump(mode="json")["slack_channel"] == {"id": rep.slack_channel.id, "name": name}
        # closing is the webhook's, as before
        assert [m.kind for m in world.messages if m.kind.startswith("channel_")] == ["channel_close"]


async def test_without_a_bot_token_the_webhook_message_as_before(skipping_env):
    world = World()
    inp = incident("P1")
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, lambda r: r.phase.value == "mitigation", "mitigation")
        assert world.channels == [] and world.calls["slack_open_channel"] == 0
        (opened,) = [m for m in world.messages if m.kind == "channel_open"]
        assert opened.text == f"incident-{inp.incident_id.lower()}"
        assert opened.idempotency_key == f"{inp.incident_id}:channel_open"
        assert entry(rep, "Create incident channel").kind == TimelineKind.NOTIFICATION
        assert rep.slack_channel is None and "slack_channel" in rep.model_dump(mode="json")


async def test_a_slack_failure_is_a_failed_step_and_the_incident_goes_on(skipping_env):
    world = World(broken={"slack_open_channel"})  # Slack refused for good (invalid_auth, missing_scope)
    inp = incident("P0")
    configure_worker(inp.incident_id, with_bot())
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, lambda r: bool(r.actions), "proposals")
        (failed,) = [e for e in entries(rep, TimelineKind.FAILED) if e.event == "Create incident channel failed"]
        assert "slack_open_channel is broken" in (failed.result or "")
        assert world.calls["slack_open_channel"] == 1  # non-retryable: asked once
        assert rep.slack_channel is None and rep.status == "open"
        assert not [m for m in world.messages if m.kind == "channel_open"]
        assert events(rep).index("Create incident channel failed") < events(rep).index("Waiting for the IC's decisions")


async def test_a_p2_opens_no_channel(skipping_env):
    world = World()
    inp = incident("P2")
    configure_worker(inp.incident_id, with_bot())
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        await until(h, lambda r: r.phase.value == "mitigation", "mitigation")
        assert world.channels == [] and not [m for m in world.messages if m.kind == "channel_open"]


async def test_the_channel_travels_across_continue_as_new(skipping_env):
    world = World()
    inp = incident("P0")
    configure_worker(inp.incident_id, with_bot(limits=LimitsConfig(continue_as_new_after_events=150)))
    async with worker_for(skipping_env, world) as tq:
        h = await start(skipping_env, world, inp, tq)
        rep = await until(h, lambda r: r.slack_channel is not None and bool(r.actions), "the channel and proposals")
        first_run = (await h.describe()).run_id
        for chunk in range(0, 120, 20):  # responders' notes fill the history
            await asyncio.gather(*(service.add_note(skipping_env.client, inp.incident_id,
                                                    Note(by=f"resp-{i % 12}", text="looking"))
                                   for i in range(chunk, chunk + 20)))
        await until(h.describe, lambda d: d.run_id != first_run, "a continued run", timeout=60)
        later = await until(h, lambda r: "Continued as new" in events(r), "the continued run's report")
        assert later.slack_channel == rep.slack_channel and len(world.channels) == 1
