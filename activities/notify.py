"""Notifications: PagerDuty-style pages, a Statuspage-style status page, Slack and a webhook.

Every request carries an ``Idempotency-Key`` so a retried activity is recognisable by the
receiver. Secrets (routing key, API key, webhook URLs, which embed tokens) never appear in
results, errors or logs.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deferred import deferred
from activities.http_client import HttpActivities, tls_context
from activities.targets import Targets
from domain.config import NotificationConfig
from domain.notify import (
    ChangeEventRequest,
    Delivery,
    MessageRequest,
    PageRequest,
    StatusPageRequest,
    component_status,
)
from domain.slack import mrkdwn_escape

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; httpx load only where an activity uses them.
if TYPE_CHECKING:
    import httpx
else:
    httpx = deferred("httpx")

# Runbook severities -> PagerDuty Events v2 severities (critical|error|warning|info).
PD_SEVERITY = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}
# 420: Statuspage's own "enhance your calm" rate-limit answer, besides 429
RETRYABLE_4XX = {408, 420, 429}
MAX_DETAIL_CHARS = 200
# PagerDuty asks a rate-limited sender to back off for minutes, not seconds: a 429 waits at
# least this long, doubling per attempt, up to PD_BACKOFF_MAX (the page activity's retry
# policy, workflows.steps.PAGE_RETRY, gives it that long)
PD_BACKOFF_FIRST = timedelta(seconds=60)
PD_BACKOFF_MAX = timedelta(minutes=4)


def _pd_backoff(resp_delay: timedelta | None) -> timedelta:
    attempt = activity.info().attempt if activity.in_activity() else 1
    floor = min(PD_BACKOFF_FIRST * 2 ** (attempt - 1), PD_BACKOFF_MAX)
    return max(floor, resp_delay or timedelta(0))


class Pacer:
    """Spaces calls at least `interval` seconds apart within this worker process (Statuspage
    allows one request a second per token; a worker's activities share the token)."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last = -1e9

    async def turn(self, interval: float) -> None:
        if self._loop is not asyncio.get_running_loop():  # a lock serves one event loop
            self._loop, self._lock = asyncio.get_running_loop(), asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            loop = asyncio.get_running_loop()
            wait = self._last + interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last = loop.time()


STATUSPAGE_PACER = Pacer()


def _ours(incident: dict[str, Any], incident_id: str) -> bool:
    meta = incident.get("metadata")
    codeblue = meta.get("codeblue") if isinstance(meta, dict) else None
    return isinstance(codeblue, dict) and codeblue.get("incident_id") == incident_id


def change_url(cfg: NotificationConfig) -> str | None:
    """Where change events go: configured, else beside the Events API's enqueue URL."""
    if cfg.pagerduty_change_url:
        return cfg.pagerduty_change_url
    url = (cfg.pagerduty_url or "").rstrip("/")
    return url[: -len("/v2/enqueue")] + "/v2/change/enqueue" if url.endswith("/v2/enqueue") else None


def _skipped(channel: str, name: str) -> Delivery:
    return Delivery(channel=channel, delivered=False, skipped=True, detail=f"{name} not configured")


def _retry_after(resp: httpx.Response) -> timedelta | None:
    value = resp.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return timedelta(seconds=min(max(seconds, 0.0), 300.0))


class NotifierActivities(HttpActivities):
    def __init__(self, config: NotificationConfig, http: httpx.AsyncClient | None = None, *,
                 targets: Targets | None = None) -> None:
        super().__init__(http)
        self.config = config
        self.targets = targets

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.config.timeout_seconds, follow_redirects=False, verify=tls_context())

    # ----------------------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        values = [
            os.environ.get(self.config.pagerduty_routing_key_env) or "",
            os.environ.get(self.config.statuspage_api_key_env) or "",
            self.config.slack_webhook_url or "",
            self.config.webhook_url or "",
        ]
        return [v for v in values if len(v) >= 4]

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    async def _send(
        self,
        channel: str,
        method: str,
        url: str,
        idempotency_key: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One HTTP call; ApplicationError (retryable or not) for anything but 2xx."""
        all_headers = {"Idempotency-Key": idempotency_key, **(headers or {})}
        try:
            resp = await self.http.request(
                method,
                url,
                json=json,
                params=params,
                headers=all_headers,
                timeout=self.config.timeout_seconds,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            raise ApplicationError(
                f"{channel}: endpoint URL is not usable ({type(e).__name__})", type="BadConfig", non_retryable=True
            ) from None
        except httpx.TimeoutException as e:
            raise ApplicationError(
                f"{channel}: request timed out ({type(e).__name__})", type="NotificationUnavailable"
            ) from None
        except httpx.HTTPError as e:
            # The exception text may carry the URL (Slack URLs embed a token): name the type only.
            raise ApplicationError(
                f"{channel}: request failed ({type(e).__name__})", type="NotificationUnavailable"
            ) from None
        if 200 <= resp.status_code < 300:
            return resp
        snippet = " ".join(resp.text.split())[:MAX_DETAIL_CHARS]
        message = self._redact(f"{channel}: HTTP {resp.status_code}" + (f": {snippet}" if snippet else ""))
        if resp.status_code >= 500 or resp.status_code in RETRYABLE_4XX:
            delay = _retry_after(resp)
            if channel == "pagerduty" and resp.status_code == 429:
                delay = _pd_backoff(delay)
            raise ApplicationError(
                message,
                type="NotificationUnavailable",
                next_retry_delay=delay,
            )
        raise ApplicationError(message, type="NotificationRejected", non_retryable=True)

    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return None

    # ----------------------------------------------------------------------------------------

    @activity.defn
    async def page(self, req: PageRequest) -> Delivery:
        if self.targets:
            self.targets.page(req)
        cfg = self.config
        if not cfg.pagerduty_url:
            return _skipped("pagerduty", "pagerduty")
        key_env = cfg.pagerduty_routing_keys_env.get(req.audience.value, cfg.pagerduty_routing_key_env)
        if req.audience.value in ("on_call", "commander") and req.service in cfg.pagerduty_service_routing_keys_env:
            key_env = cfg.pagerduty_service_routing_keys_env[req.service]  # the service's own PagerDuty service
        routing_key = os.environ.get(key_env)
        if not routing_key:
            raise ApplicationError(
                f"pagerduty: routing key variable {key_env} is not set",
                type="NotificationMisconfigured",
                non_retryable=True,
            )
        body: dict[str, Any] = {"routing_key": routing_key, "event_action": req.action, "dedup_key": req.dedup_key}
        if req.action == "trigger":  # acknowledge and resolve take the dedup key alone (Events API v2)
            severity = req.severity.lower() if req.severity.lower() in PD_SEVERITIES else PD_SEVERITY.get(req.severity.upper(), "error")
            body["payload"] = {
                "summary": req.summary[:1024],
                "severity": severity,
                "source": req.service or "codeblue",
                **({"component": req.service} if req.service else {}),
                "group": "codeblue",
                "class": req.audience.value,
                "custom_details": {
                    "incident_id": req.incident_id,
                    "audience": req.audience.value,
                    "contact": req.contact,
                },
            }
            if req.links:
                body["links"] = [link.model_dump() for link in req.links]
        key = req.dedup_key if req.action == "trigger" else f"{req.dedup_key}:{req.action}"
        resp = await self._send("pagerduty", "POST", cfg.pagerduty_url, key, json=body)
        data = self._json(resp)
        dedup = data.get("dedup_key") if isinstance(data, dict) else None
        return Delivery(
            channel="pagerduty",
            delivered=True,
            detail={"trigger": f"paged {req.audience.value} ({req.contact})",
                    "acknowledge": f"acknowledged the {req.audience.value} page",
                    "resolve": f"resolved the {req.audience.value} page"}[req.action],
            external_id=dedup or req.dedup_key,
        )

    @activity.defn
    async def change_event(self, req: ChangeEventRequest) -> Delivery:
        """A change CodeBlue made, on the service's PagerDuty timeline (`/v2/change/enqueue`)."""
        cfg = self.config
        url = change_url(cfg)
        if not url:
            return _skipped("pagerduty", "pagerduty change events")
        routing_key = os.environ.get(cfg.pagerduty_service_routing_keys_env.get(req.service)
                                     or cfg.pagerduty_routing_keys_env.get("on_call", cfg.pagerduty_routing_key_env))
        if not routing_key:
            raise ApplicationError("pagerduty: routing key variable for change events is not set",
                                   type="NotificationMisconfigured", non_retryable=True)
        body: dict[str, Any] = {
            "routing_key": routing_key,
            "payload": {
                "summary": req.summary[:1024],
                "timestamp": req.timestamp,
                "source": req.service or "codeblue",
                "custom_details": {"incident_id": req.incident_id, "change": req.kind, **req.details},
            },
        }
        if req.links:
            body["links"] = [link.model_dump() for link in req.links]
        await self._send("pagerduty", "POST", url, f"{req.incident_id}:change:{req.kind}:{req.timestamp}", json=body)
        return Delivery(channel="pagerduty", delivered=True, detail=f"change event: {req.kind}")

    @activity.defn
    async def status_page(self, req: StatusPageRequest) -> Delivery:
        """Statuspage as its API intends: the incident is found again by its `metadata` (never
        by its public name, which says nothing internal), the affected services' components
        take the incident's status, and the token's one request a second is kept."""
        cfg = self.config
        if not cfg.statuspage_url:
            return _skipped("statuspage", "statuspage")
        base = f"{cfg.statuspage_url.rstrip('/')}/pages/{cfg.statuspage_page_id}/incidents"
        key = f"statuspage:{req.incident_id}:{req.status}"
        headers = {}
        api_key = os.environ.get(cfg.statuspage_api_key_env)
        if api_key:
            headers["Authorization"] = f"OAuth {api_key}"
        incident: dict[str, Any] = {
            "name": req.title,
            "status": req.status,
            "body": req.message,
            "impact_override": req.impact,
            "metadata": {"codeblue": {"incident_id": req.incident_id}},
        }
        components = {cfg.statuspage_components[s]: component_status(req.severity, req.status)
                      for s in req.services if s in cfg.statuspage_components}
        if components:
            incident["components"] = components
            incident["component_ids"] = sorted(components)

        await self._statuspage_turn()
        found = await self._send("statuspage", "GET", base, key, params={"limit": "100"}, headers=headers)
        listing = self._json(found)
        if isinstance(listing, dict):  # tolerate {"incidents": [...]} as well as a bare list
            listing = listing.get("incidents")
        existing = [i for i in (listing or []) if isinstance(i, dict) and i.get("id") and _ours(i, req.incident_id)]
        await self._statuspage_turn()
        if existing:
            incident_id = str(existing[0]["id"])
            await self._send(
                "statuspage", "PATCH", f"{base}/{incident_id}", key, json={"incident": incident}, headers=headers
            )
            return Delivery(
                channel="statuspage",
                delivered=True,
                detail=f"updated incident {incident_id}: {req.status}" + (f", {len(components)} components" if components else ""),
                external_id=incident_id,
            )
        created = await self._send("statuspage", "POST", base, key, json={"incident": incident}, headers=headers)
        data = self._json(created)
        new_id = str(data["id"]) if isinstance(data, dict) and data.get("id") is not None else None
        return Delivery(
            channel="statuspage",
            delivered=True,
            detail=f"created incident {new_id or '(id unknown)'}: {req.status}" + (f", {len(components)} components" if components else ""),
            external_id=new_id,
        )

    async def _statuspage_turn(self) -> None:
        """Waits until this worker's previous Statuspage request is `statuspage_min_interval_seconds` old."""
        await STATUSPAGE_PACER.turn(self.config.statuspage_min_interval_seconds)

    @activity.defn
    async def post_message(self, req: MessageRequest) -> Delivery:
        cfg = self.config
        if req.kind == "stakeholders":
            if not cfg.slack_webhook_url:
                return _skipped("slack", "slack")
            await self._send("slack", "POST", cfg.slack_webhook_url, req.idempotency_key, json={"text": mrkdwn_escape(req.text)})  # Slack reads <, > and & as control sequences
            return Delivery(channel="slack", delivered=True, detail="stakeholders notified")
        if not cfg.webhook_url:
            return _skipped("webhook", "webhook")
        await self._send(
            "webhook",
            "POST",
            cfg.webhook_url,
            req.idempotency_key,
            json={"incident_id": req.incident_id, "kind": req.kind, "text": req.text},
        )
        return Delivery(channel="webhook", delivered=True, detail=f"{req.kind} posted")
