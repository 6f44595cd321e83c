"""PagerDuty's whole lifecycle and Statuspage as their APIs intend, over real HTTP against the
receiver (which answers as the Events API v2 and Statuspage's incidents API validate):
acknowledge and resolve by dedup key, links, change events, minutes of backoff on a 429;
Statuspage components by status, all four statuses, the incident found again by metadata,
420 retried, one request a second."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifierActivities, change_url
from domain.config import NotificationConfig
from domain.notify import Audience, ChangeEventRequest, Link, PageRequest, StatusPageRequest, component_status
from sandbox.receiver import SANDBOX_COMPONENT, Receiver

ROUTING_KEY = "R0UTINGKEY-0123456789abcdef"
LINK = Link(href="http://ui.example/namespaces/default/workflows/INC-1", text="INC-1 in the Temporal UI")


@pytest.fixture
async def receiver(monkeypatch):
    monkeypatch.setenv("CODEBLUE_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    async with Receiver() as r:
        yield r


@pytest.fixture
async def notifier(receiver):
    n = NotifierActivities(receiver.notification_config(timeout_seconds=2.0))
    yield n
    await n.aclose()


def _page(action: str = "trigger", **kw) -> PageRequest:
    return PageRequest(incident_id="INC-1", audience=Audience.ON_CALL, contact="+1-555-0123", severity="P0",
                       summary="P0: gateway down", dedup_key="INC-1:on_call:open", action=action,
                       service="api-gateway", **kw)


async def test_a_page_is_triggered_with_links_then_acknowledged_then_resolved_by_its_dedup_key(receiver, notifier):
    env = ActivityEnvironment()
    for action in ("trigger", "acknowledge", "resolve"):
        d = await env.run(notifier.page, _page(action, links=[LINK] if action == "trigger" else []))
        assert d.delivered and action[:5] in d.detail.replace("paged", "trigger")
    trigger, ack, resolve = (c.json for c in receiver.effects("pagerduty"))
    assert trigger["links"] == [LINK.model_dump()] and trigger["payload"]["source"] == "api-gateway"
    # Events API v2: acknowledge and resolve carry the routing and dedup keys alone
    for event, action in ((ack, "acknowledge"), (resolve, "resolve")):
        assert event == {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": "INC-1:on_call:open"}
    assert [c.idempotency_key for c in receiver.effects("pagerduty")] == [
        "INC-1:on_call:open", "INC-1:on_call:open:acknowledge", "INC-1:on_call:open:resolve"]


async def test_a_429_from_pagerduty_backs_off_for_minutes_and_honours_a_longer_retry_after(receiver, notifier):
    receiver.fail_next("pagerduty", 429)
    with pytest.raises(ApplicationError) as e:
        await ActivityEnvironment().run(notifier.page, _page())
    assert not e.value.non_retryable and e.value.next_retry_delay == timedelta(seconds=60)
    env = ActivityEnvironment()
    env.info = env.info.__class__(**{**env.info.__dict__, "attempt": 3})
    receiver.fail_next("pagerduty", 429)
    with pytest.raises(ApplicationError) as e:
        await env.run(notifier.page, _page())
    assert e.value.next_retry_delay == timedelta(minutes=4)  # 60 s doubling, at most 4 minutes
    receiver.fail_next("statuspage", 429)  # other channels keep their own short retries
    with pytest.raises(ApplicationError) as e:
        await ActivityEnvironment().run(notifier.status_page, StatusPageRequest(
            incident_id="INC-1", title="t", status="investigating", message="m"))
    assert e.value.next_retry_delay is None


async def test_a_change_event_goes_to_the_change_endpoint_with_its_details_and_links(receiver, notifier):
    assert change_url(notifier.config) == receiver.pagerduty_url.replace("/v2/enqueue", "/v2/change/enqueue")
    d = await ActivityEnvironment().run(notifier.change_event, ChangeEventRequest(
        incident_id="INC-1", service="api-gateway", kind="rollback", summary="CodeBlue rolled back healthcare-platform",
        timestamp="2026-12-07T18:00:00+00:00", details={"to_revision": "11"}, links=[LINK]))
    assert d.delivered and d.detail == "change event: rollback"
    (change,) = receiver.changes
    assert change == {"routing_key": ROUTING_KEY, "links": [LINK.model_dump()], "payload": {
        "summary": "CodeBlue rolled back healthcare-platform", "timestamp": "2026-12-07T18:00:00+00:00",
        "source": "api-gateway", "custom_details": {"incident_id": "INC-1", "change": "rollback", "to_revision": "11"}}}
    assert NotificationConfig(pagerduty_url="https://pd.example/custom").pagerduty_change_url is None
    assert change_url(NotificationConfig(pagerduty_url="https://pd.example/custom")) is None  # not guessed


def _sp(status: str, severity: str = "P1") -> StatusPageRequest:
    return StatusPageRequest(incident_id="INC-5", title="api-gateway: service disruption", status=status,
                             message=f"now {status}", services=["api-gateway", "not-on-the-page"], severity=severity)


async def test_statuspage_walks_all_four_statuses_with_the_services_component_and_finds_its_incident_by_metadata(
        receiver, notifier):
    env = ActivityEnvironment()
    ids = set()
    for status in ("investigating", "identified", "monitoring", "resolved"):
        ids.add((await env.run(notifier.status_page, _sp(status))).external_id)
        expected = "operational" if status == "resolved" else "partial_outage"
        assert receiver.components == {SANDBOX_COMPONENT: expected}, status
    assert len(ids) == 1 and len(receiver.incidents) == 1  # one public incident, updated in place
    (incident,) = receiver.incidents.values()
    assert [u["status"] for u in incident["incident_updates"]] == ["investigating", "identified", "monitoring", "resolved"]
    assert incident["metadata"] == {"codeblue": {"incident_id": "INC-5"}} and "INC-5" not in incident["name"]
    incident["name"] = "renamed by a person on the page"  # found by metadata, not by its name
    assert (await env.run(notifier.status_page, _sp("resolved"))).external_id in ids
    assert [component_status(s, "investigating") for s in ("P0", "P1", "P2")] == [
        "major_outage", "partial_outage", "degraded_performance"]


async def test_statuspage_420_is_retried_and_calls_keep_one_second_apart(receiver):
    receiver.fail_next("statuspage", 420)
    n = NotifierActivities(receiver.notification_config(statuspage_min_interval_seconds=0.3))
    try:
        with pytest.raises(ApplicationError) as e:
            await ActivityEnvironment().run(n.status_page, _sp("investigating"))
        assert not e.value.non_retryable  # Temporal retries it with the policy's backoff
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ActivityEnvironment().run(n.status_page, _sp("investigating"))  # a GET then a POST
        await ActivityEnvironment().run(n.status_page, _sp("identified"))  # a GET then a PATCH
        assert loop.time() - t0 >= 3 * 0.3 - 0.05  # four requests, each at least 0.3 s after the last
    finally:
        await n.aclose()


async def test_an_incidents_pages_and_changes_go_to_its_services_own_routing_key(receiver, monkeypatch):
    monkeypatch.setenv("CODEBLUE_PD_KEY_PORTAL", "PORTALKEY-0123456789")
    n = NotifierActivities(receiver.notification_config(
        pagerduty_service_routing_keys_env={"patient-portal": "CODEBLUE_PD_KEY_PORTAL"}))
    try:
        env = ActivityEnvironment()
        await env.run(n.page, _page().model_copy(update={"service": "patient-portal"}))
        await env.run(n.page, _page().model_copy(update={"service": "patient-portal", "audience": Audience.ENGINEERING_MANAGER,
                                                         "dedup_key": "INC-1:engineering_manager:sla"}))
        await env.run(n.change_event, ChangeEventRequest(incident_id="INC-1", service="patient-portal", kind="rollback",
                                                         summary="rolled back", timestamp="2026-12-07T18:00:00+00:00"))
        await env.run(n.page, _page().model_copy(update={"dedup_key": "INC-2:on_call:open"}))  # the gateway: the default key
        keys = [c.json["routing_key"] for c in receiver.effects("pagerduty")]
        assert keys == ["PORTALKEY-0123456789", ROUTING_KEY, "PORTALKEY-0123456789", ROUTING_KEY]
    finally:
        await n.aclose()
