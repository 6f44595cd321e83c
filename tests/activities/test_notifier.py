"""Notifier and health activities against the local receiver, over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.health import HealthActivities
from activities.notify import NotifierActivities
from domain.cluster import HealthProbeRequest
from domain.config import NotificationConfig
from domain.notify import Audience, MessageRequest, PageRequest, StatusPageRequest
from sandbox.receiver import Receiver
from starters.ports import free_port

ROUTING_KEY = "R0UTINGKEY-0123456789abcdef"
STATUSPAGE_KEY = "SPKEY-abcdef0123456789"


@pytest.fixture
async def receiver():
    state = {"healthy": True}
    async with Receiver(health=lambda: state["healthy"]) as r:
        r.state = state  # type: ignore[attr-defined]  # a test-only attribute: the tests flip its health
        yield r


@pytest.fixture
def secrets(monkeypatch):
    monkeypatch.setenv("CODEBLUE_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("CODEBLUE_STATUSPAGE_API_KEY", STATUSPAGE_KEY)


@pytest.fixture
async def notifier(receiver, secrets):
    n = NotifierActivities(receiver.notification_config(timeout_seconds=2.0))
    yield n
    await n.aclose()


def page_request(key: str = "INC-1:on_call:open") -> PageRequest:
    return PageRequest(
        incident_id="INC-1",
        audience=Audience.ON_CALL,
        contact="+1-555-0123",
        severity="P1",
        summary="P1: API gateway 5xx",
        dedup_key=key,
    )


async def test_page_posts_events_v2_and_dedups_retries(receiver, notifier):
    env = ActivityEnvironment()
    d = await env.run(notifier.page, page_request())
    assert d.channel == "pagerduty" and d.delivered and not d.skipped
    assert d.external_id == "INC-1:on_call:open"
    assert ROUTING_KEY not in d.detail

    (call,) = receiver.effects("pagerduty")
    assert call.idempotency_key == "INC-1:on_call:open"
    assert call.json == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "INC-1:on_call:open",
        "payload": {
            "summary": "P1: API gateway 5xx",
            "severity": "error",
            "source": "codeblue",
            "group": "codeblue",
            "class": "on_call",
            "custom_details": {"incident_id": "INC-1", "audience": "on_call", "contact": "+1-555-0123"},
        },
    }

    # A retried activity sends the same key: recognised, answered, not applied twice.
    again = await notifier.page(page_request())
    assert again.delivered
    assert len(receiver.effects("pagerduty")) == 1
    assert len(receiver.duplicates) == 1 and receiver.duplicates[0].idempotency_key == "INC-1:on_call:open"


async def test_resolve_closes_the_page_and_each_audience_may_have_its_own_routing_key(receiver, secrets, monkeypatch):
    monkeypatch.setenv("CODEBLUE_PAGERDUTY_EM_KEY", "em-routing-key-0123456789")
    cfg = receiver.notification_config().model_copy(update={"pagerduty_routing_keys_env": {"engineering_manager": "CODEBLUE_PAGERDUTY_EM_KEY"}})
    n = NotifierActivities(cfg)
    trigger = page_request().model_copy(update={"service": "patient-portal"})
    await n.page(trigger)
    await n.page(trigger.model_copy(update={"action": "resolve", "summary": "resolved"}))
    em = trigger.model_copy(update={"audience": Audience.ENGINEERING_MANAGER, "dedup_key": "INC-1:engineering_manager:sla"})
    await n.page(em)
    first, resolve, to_em = receiver.effects("pagerduty")
    assert first.json["payload"]["source"] == first.json["payload"]["component"] == "patient-portal"
    # Events API v2: a resolve names the routing key, the action and the dedup key, nothing else
    assert resolve.json == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "INC-1:on_call:open"}
    assert resolve.idempotency_key == "INC-1:on_call:open:resolve"
    assert to_em.json["routing_key"] == "em-routing-key-0123456789"
    await n.aclose()


async def test_page_without_routing_key_is_a_config_error(receiver, monkeypatch):
    monkeypatch.delenv("CODEBLUE_PAGERDUTY_ROUTING_KEY", raising=False)
    n = NotifierActivities(receiver.notification_config())
    with pytest.raises(ApplicationError) as ei:
        await n.page(page_request())
    assert ei.value.non_retryable and ei.value.type == "NotificationMisconfigured"
    assert receiver.calls == []
    await n.aclose()


async def test_status_page_created_once_then_updated(receiver, notifier):
    # Another incident whose ID merely starts the same way must not be reused.
    other = await notifier.status_page(
        StatusPageRequest(incident_id="INC-77", title="Other", status="investigating", message="x")
    )
    receiver.reset()
    receiver.incidents[other.external_id] = {  # keep it listed, forget its calls
        "id": other.external_id, "page_id": "healthcare-platform", "name": "[INC-77] Other",
        "status": "investigating", "incident_updates": [],
    }
    first = await notifier.status_page(
        StatusPageRequest(incident_id="INC-7", title="API degraded", status="investigating", message="Looking")
    )
    assert first.delivered and first.external_id
    assert first.detail.startswith("created")

    second = await notifier.status_page(
        StatusPageRequest(incident_id="INC-7", title="API degraded", status="resolved", message="Fixed", impact="critical")
    )
    assert second.delivered and second.external_id == first.external_id
    assert second.detail.startswith("updated")

    assert first.external_id != other.external_id
    assert len(receiver.incidents) == 2
    incident = receiver.incidents[first.external_id]
    assert incident["name"] == "API degraded"  # public text only; found again by its metadata
    assert incident["status"] == "resolved" and incident["impact_override"] == "critical"
    assert [u["body"] for u in incident["incident_updates"]] == ["Looking", "Fixed"]

    applied = receiver.effects("statuspage")
    assert [(c.method, c.idempotency_key) for c in applied] == [
        ("POST", "statuspage:INC-7:investigating"),
        ("PATCH", "statuspage:INC-7:resolved"),
    ]
    assert applied[0].json["incident"] == {
        "name": "API degraded",
        "status": "investigating",
        "body": "Looking",
        "impact_override": "major",
        "metadata": {"codeblue": {"incident_id": "INC-7"}},
    }
    lookups = [c for c in receiver.calls_to("statuspage") if c.method == "GET"]
    assert len(lookups) == 2 and all(c.query == {"limit": "100"} for c in lookups)
    assert all(c.headers.get("Authorization") == f"OAuth {STATUSPAGE_KEY}" for c in receiver.calls_to("statuspage"))


async def test_status_page_retry_after_create_updates_instead_of_duplicating(receiver, notifier):
    req = StatusPageRequest(incident_id="INC-8", title="Outage", status="investigating", message="Looking")
    await notifier.status_page(req)
    again = await notifier.status_page(req)  # the activity retried after a lost response
    assert again.delivered
    assert len(receiver.incidents) == 1
    # Same Idempotency-Key: the receiver recognises the retry and applies nothing new.
    assert len(receiver.effects("statuspage")) == 1
    assert [c.method for c in receiver.duplicates] == ["PATCH"]


async def test_status_page_without_api_key_sends_no_authorization(receiver, monkeypatch):
    monkeypatch.delenv("CODEBLUE_STATUSPAGE_API_KEY", raising=False)
    n = NotifierActivities(receiver.notification_config())
    d = await n.status_page(StatusPageRequest(incident_id="INC-9", title="t", status="investigating", message="m"))
    assert d.delivered
    assert all("Authorization" not in c.headers for c in receiver.calls_to("statuspage"))
    await n.aclose()


async def test_stakeholders_go_to_slack_and_channel_events_to_webhook(receiver, notifier):
    d = await notifier.post_message(
        MessageRequest(incident_id="INC-1", kind="stakeholders", text="[P1] API down: 5xx ratio 0.35 (limit < 0.05) & rising",
                       idempotency_key="INC-1:stakeholders:initial")
    )
    assert d.channel == "slack" and d.delivered
    (slack,) = receiver.effects("slack")
    # Slack's formatting rule: &, < and > escaped, or Slack reads them as control sequences
    assert slack.json == {"text": "[P1] API down: 5xx ratio 0.35 (limit &lt; 0.05) &amp; rising"}
    assert slack.idempotency_key == "INC-1:stakeholders:initial"

    for kind in ("channel_open", "reminder", "channel_close"):
        d = await notifier.post_message(
            MessageRequest(incident_id="INC-1", kind=kind, text=f"incident-inc-1 {kind}", idempotency_key=f"INC-1:{kind}")
        )
        assert d.channel == "webhook" and d.delivered
    hooks = receiver.effects("webhook")
    assert [c.json for c in hooks] == [
        {"incident_id": "INC-1", "kind": k, "text": f"incident-inc-1 {k}"} for k in ("channel_open", "reminder", "channel_close")
    ]
    assert [c.idempotency_key for c in hooks] == ["INC-1:channel_open", "INC-1:reminder", "INC-1:channel_close"]
    assert receiver.effects("pagerduty") == [] and receiver.effects("statuspage") == []


async def test_unconfigured_endpoints_are_skipped(receiver, secrets):
    n = NotifierActivities(NotificationConfig())
    results = [
        await n.page(page_request()),
        await n.status_page(StatusPageRequest(incident_id="INC-1", title="t", status="investigating", message="m")),
        await n.post_message(MessageRequest(incident_id="INC-1", kind="stakeholders", text="x", idempotency_key="k1")),
        await n.post_message(MessageRequest(incident_id="INC-1", kind="channel_open", text="x", idempotency_key="k2")),
    ]
    assert [(d.channel, d.delivered, d.skipped, d.detail) for d in results] == [
        ("pagerduty", False, True, "pagerduty not configured"),
        ("statuspage", False, True, "statuspage not configured"),
        ("slack", False, True, "slack not configured"),
        ("webhook", False, True, "webhook not configured"),
    ]
    assert receiver.calls == []
    await n.aclose()


@pytest.mark.parametrize("status", [503, 500, 429, 408])
async def test_transient_failure_is_retryable_and_retry_applies_once(receiver, notifier, status):
    receiver.fail_next("slack", status, times=1)
    req = MessageRequest(incident_id="INC-2", kind="stakeholders", text="update", idempotency_key="INC-2:stakeholders:initial")
    with pytest.raises(ApplicationError) as ei:
        await notifier.post_message(req)
    assert not ei.value.non_retryable
    assert ei.value.type == "NotificationUnavailable"
    assert f"HTTP {status}" in str(ei.value)
    assert receiver.effects("slack") == []

    d = await notifier.post_message(req)  # Temporal's retry
    assert d.delivered
    assert len(receiver.effects("slack")) == 1
    assert [c.status for c in receiver.calls_to("slack")] == [status, 200]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_error_is_not_retryable(receiver, notifier, status):
    receiver.fail_next("pagerduty", status)
    with pytest.raises(ApplicationError) as ei:
        await notifier.page(page_request())
    assert ei.value.non_retryable and ei.value.type == "NotificationRejected"
    assert ROUTING_KEY not in str(ei.value)


async def test_connection_refused_is_retryable():
    n = NotifierActivities(NotificationConfig(webhook_url=f"http://127.0.0.1:{free_port()}/hook", timeout_seconds=2))
    with pytest.raises(ApplicationError) as ei:
        await n.post_message(MessageRequest(incident_id="I", kind="channel_open", text="x", idempotency_key="k"))
    assert not ei.value.non_retryable and ei.value.type == "NotificationUnavailable"
    assert "127.0.0.1" not in str(ei.value)  # the URL (which may embed a token) is never echoed
    await n.aclose()


async def test_secrets_echoed_by_a_server_are_redacted(secrets):
    hook = "https://hooks.example.com/services/T000/B000/SECRETTOKEN"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=f"bad request {request.content.decode()} to {request.url}")

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    n = NotifierActivities(
        NotificationConfig(pagerduty_url="https://events.example.com/v2/enqueue", slack_webhook_url=hook), http=http
    )
    with pytest.raises(ApplicationError) as ei:
        await n.page(page_request())
    assert ROUTING_KEY not in str(ei.value) and "***" in str(ei.value)
    with pytest.raises(ApplicationError) as ei:
        await n.post_message(MessageRequest(incident_id="I", kind="stakeholders", text="x", idempotency_key="k"))
    assert "SECRETTOKEN" not in str(ei.value)
    await http.aclose()


async def test_health_probe_ok(receiver):
    h = HealthActivities(pause_seconds=0.01)
    res = await ActivityEnvironment().run(h.probe_health, HealthProbeRequest(url=receiver.health_url, attempts=3))
    assert res.ok and res.successes == 3 and res.attempts == 3
    assert res.last_status == 200 and res.error is None
    assert res.median_latency_ms is not None and res.median_latency_ms >= 0
    assert len(receiver.calls_to("health")) == 3
    await h.aclose()


async def test_health_probe_failing(receiver):
    receiver.state["healthy"] = False
    h = HealthActivities(pause_seconds=0.01)
    res = await h.probe_health(HealthProbeRequest(url=receiver.health_url, attempts=3))
    assert not res.ok and res.successes == 0 and res.last_status == 503
    assert res.error and "503" in res.error


async def test_health_probe_one_bad_attempt_is_not_ok(receiver):
    receiver.fail_next("health", 502, times=1)
    h = HealthActivities(pause_seconds=0.01)
    res = await h.probe_health(HealthProbeRequest(url=receiver.health_url, attempts=3))
    assert not res.ok and res.successes == 2 and res.last_status == 200


async def test_health_probe_connection_refused_counts_as_failure():
    h = HealthActivities(pause_seconds=0.01)
    res = await h.probe_health(HealthProbeRequest(url=f"http://127.0.0.1:{free_port()}/health", attempts=2, timeout_seconds=2))
    assert not res.ok and res.successes == 0 and res.attempts == 2
    assert res.last_status is None and res.median_latency_ms is None
    assert res.error and "ConnectError" in res.error
    await h.aclose()


class _DripServer:
    """Answers 200 at once, then trickles the body a byte every `every` seconds: each read is
    quick (httpx's per-phase timeout never fires) but the response takes forever."""

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self.writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(self.every)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/health"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for w in self.writers:
            w.transport.abort()


def test_health_budget_covers_every_attempt_timing_out():
    req = HealthProbeRequest(url="http://x/health", attempts=20, timeout_seconds=5.0)
    assert req.budget_seconds() >= 20 * 5.0 + 19 * HealthActivities().pause_seconds
    assert req.budget_seconds() > 60  # the reads' fixed start-to-close timeout is not enough here
    assert req.budget_seconds(pause_seconds=2.0) >= 20 * 7.0
    assert HealthProbeRequest(url="http://x/health", attempts=3, timeout_seconds=5.0).budget_seconds() < 60


async def test_health_probe_attempt_is_bounded_as_a_whole():
    h = HealthActivities(pause_seconds=0.01)
    async with _DripServer() as url:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        res = await asyncio.wait_for(h.probe_health(HealthProbeRequest(url=url, attempts=2, timeout_seconds=0.3)), 10)
        took = loop.time() - t0
    await h.aclose()
    assert took < 1.5, took  # two attempts of 0.3 s, not two 100 s trickles
    assert not res.ok and res.successes == 0 and res.attempts == 2
    assert res.error and "timed out after 0.3s" in res.error


async def test_health_probe_stops_at_its_start_to_close_timeout_and_heartbeats():
    h = HealthActivities(pause_seconds=0.01, heartbeat_seconds=0.05)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, start_to_close_timeout=timedelta(seconds=1))
    beats: list[tuple] = []
    env.on_heartbeat = lambda *d: beats.append(d)
    async with _DripServer() as url:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        req = HealthProbeRequest(url=url, attempts=10, timeout_seconds=0.3)
        res = await asyncio.wait_for(env.run(h.probe_health, req), 10)
        took = loop.time() - t0
    await h.aclose()
    assert took < 1.0, took  # returned inside its 1 s, not after 10 x 0.3 s
    assert not res.ok and res.attempts == 10 and res.successes == 0
    assert res.error and "of 10 attempts made" in res.error
    assert 2 <= beats[-1][0]["attempts_made"] < 10
    assert len(beats) >= 8  # every 0.05 s while the attempts hang, not once per attempt
