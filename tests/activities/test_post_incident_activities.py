"""Smoke checks and the post-mortem booking over real HTTP to the local receiver."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.post_incident import PostIncidentActivities
from domain.config import PostIncidentConfig
from domain.post_incident import CalendarInvite, SmokeCheckRequest
from sandbox.receiver import Receiver


def invite() -> CalendarInvite:
    return CalendarInvite(
        incident_id="INC-1", summary="Post-mortem: INC-1", description="d", start="2026-11-28T10:00:00+00:00",
        end="2026-11-28T11:00:00+00:00", attendees=[{"role": "incident_commander", "name": "alice"}],
        idempotency_key="INC-1:postmortem-invite",
    )


async def test_smoke_check_compares_the_status_and_refuses_odd_methods():
    state = {"ok": True}
    async with Receiver(health=lambda: state["ok"]) as r:
        a = PostIncidentActivities(PostIncidentConfig())
        env = ActivityEnvironment()
        res = await env.run(a.smoke_check, SmokeCheckRequest(name="health", url=r.health_url))
        assert res.ok and res.status == 200
        state["ok"] = False
        res = await env.run(a.smoke_check, SmokeCheckRequest(name="health", url=r.health_url))
        assert not res.ok and "expected 200" in res.detail
        with pytest.raises(ApplicationError) as e:
            await env.run(a.smoke_check, SmokeCheckRequest(name="x", method="TRACE", url=r.health_url))
        assert e.value.non_retryable and e.value.type == "BadConfig"
        await a.aclose()


async def test_booking_is_idempotent_skipped_when_unset_and_retryable_on_5xx():
    async with Receiver() as r:
        env = ActivityEnvironment()
        unset = PostIncidentActivities(PostIncidentConfig())
        d = await env.run(unset.schedule_postmortem, invite())
        assert d.skipped and not d.delivered
        a = PostIncidentActivities(PostIncidentConfig(calendar_webhook_url=f"{r.webhook_url}/calendar"))
        r.fail_next("webhook", 503)
        with pytest.raises(ApplicationError) as e:
            await env.run(a.schedule_postmortem, invite())
        assert not e.value.non_retryable
        assert (await env.run(a.schedule_postmortem, invite())).delivered
        assert (await env.run(a.schedule_postmortem, invite())).delivered  # a retry after success
        booked = r.effects("webhook")
        assert len(booked) == 1 and booked[0].json["attendees"][0]["name"] == "alice"
        assert "idempotency_key" not in booked[0].json
        for x in (a, unset):
            await x.aclose()
