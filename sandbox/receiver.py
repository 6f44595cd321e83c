"""A local HTTP receiver standing in for Slack, Statuspage, PagerDuty, a webhook and /health.

    async with Receiver(health=lambda: cluster_is_healthy()) as r:
        config = r.notification_config()      # or r.slack_url, r.statuspage_url, ...
        ...
        assert len(r.effects("statuspage")) == 2

Every call is recorded in ``r.calls``. Mutating calls (anything but GET/HEAD) that carry an
``Idempotency-Key`` already seen on the same channel are answered with the original response
and not applied again; they are also listed in ``r.duplicates``. ``r.effects(channel)`` is
what was actually applied. ``r.fail_next(channel, status, times)`` injects failures.

``GET /metrics`` is the gateway's own metrics in Prometheus' exposition format
(``sandbox.gateway_metrics``: request counts by code, a latency histogram, requests in flight),
following the health function: bad while unhealthy, good once healthy. Scrapes are not
recorded in ``r.calls``.

Slack's Web API (chat.postMessage, chat.update, views.open, ...) is served too, under
``/slack-api/api/``: ``r.slack_api`` (sandbox.slack_api.SlackApi), ``r.slack_api_url``.

Run standalone for a drill: ``python -m sandbox.receiver [--port N]`` prints the URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from domain.config import NotificationConfig
from sandbox.gateway_metrics import GatewayMetrics
from sandbox.slack_api import SANDBOX_BOT_TOKEN, SlackApi

CHANNELS = ("slack", "statuspage", "pagerduty", "webhook", "health")
_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Call:
    channel: str  # slack | statuspage | pagerduty | webhook | health | unknown
    method: str
    path: str
    idempotency_key: str | None
    json: Any
    status: int = 0  # what the receiver answered
    duplicate: bool = False  # a repeated Idempotency-Key, answered from the cache
    injected: bool = False  # failed on purpose by fail_next()
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def applied(self) -> bool:
        return (
            self.method in _MUTATING
            and not self.duplicate
            and not self.injected
            and 200 <= self.status < 300
        )


@dataclass
class _Stored:
    status: int
    body: bytes
    content_type: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Receiver:
    def __init__(
        self,
        health: Callable[[], bool | Awaitable[bool]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        service: str = "api-gateway",
        slack_token: str = SANDBOX_BOT_TOKEN,
    ) -> None:
        self.health = health
        # other services' health, at /health/<service> (the multi-service world)
        self.service_health: dict[str, Callable[[], bool | Awaitable[bool]]] = {}
        self.slack_api = SlackApi(token=slack_token)  # the Web API stand-in (bot token checked)
        self.metrics = GatewayMetrics(service)  # its own registry, never the global one
        self.host = host
        self._port = port
        self.calls: list[Call] = []
        self.duplicates: list[Call] = []
        self.incidents: dict[str, dict[str, Any]] = {}  # Statuspage incidents by id
        self.components: dict[str, str] = {}  # Statuspage component statuses by id
        self.pages: dict[str, dict[str, Any]] = {}  # PagerDuty events by dedup_key (latest)
        self.changes: list[dict[str, Any]] = []  # PagerDuty change events, in order
        self._responses: dict[tuple[str, str], _Stored] = {}
        self._failures: dict[str, list[int]] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self.slack_api.add_routes(app, prefix="/slack-api")  # before the catch-all
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._sock = sock
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.slack_api.mounted_at(self.url)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- URLs --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("receiver is not running")
        return self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def slack_url(self) -> str:
        return f"{self.url}/slack/webhook"

    @property
    def slack_api_url(self) -> str:
        """slack_sdk's base_url for the Web API stand-in (SlackConfig.api_url)."""
        return self.slack_api.api_url

    @property
    def statuspage_url(self) -> str:
        return f"{self.url}/statuspage/v1"

    @property
    def pagerduty_url(self) -> str:
        return f"{self.url}/pagerduty/v2/enqueue"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhook"

    @property
    def health_url(self) -> str:
        return f"{self.url}/health"

    def service_health_url(self, service: str) -> str:
        return f"{self.url}/health/{service}"

    @property
    def metrics_target(self) -> str:
        """host:port of `/metrics`, as a Prometheus scrape config names it."""
        return f"{self.host}:{self.port}"

    def notification_config(self, **overrides: Any) -> NotificationConfig:
        """A NotificationConfig pointing every channel at this receiver."""
        values: dict[str, Any] = {
            "slack_webhook_url": self.slack_url,
            "statuspage_url": self.statuspage_url,
            "pagerduty_url": self.pagerduty_url,
            "webhook_url": self.webhook_url,
            # the stand-in has no rate limit: drills need not wait a second per Statuspage call
            "statuspage_min_interval_seconds": 0.0,
            "statuspage_components": {"api-gateway": SANDBOX_COMPONENT},
        }
        values.update(overrides)
        return NotificationConfig(**values)

    # -- test helpers ------------------------------------------------------------------------

    def fail_next(self, channel: str, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` requests on `channel` with `status` (not applied, not cached)."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; one of {CHANNELS}")
        self._failures.setdefault(channel, []).extend([status] * times)

    def effects(self, channel: str) -> list[Call]:
        """Calls on `channel` that changed something: mutating, 2xx, not duplicates or injected."""
        return [c for c in self.calls if c.channel == channel and c.applied]

    def calls_to(self, channel: str) -> list[Call]:
        return [c for c in self.calls if c.channel == channel]

    def reset(self) -> None:
        self.calls.clear()
        self.duplicates.clear()
        self.incidents.clear()
        self.components.clear()
        self.pages.clear()
        self.changes.clear()
        self._responses.clear()
        self._failures.clear()
        self.slack_api.reset()

    # -- request handling --------------------------------------------------------------------

    @staticmethod
    def _channel(path: str) -> str:
        if path == "/health" or path.startswith("/health/"):
            return "health"
        if path.startswith("/slack/"):
            return "slack"
        if path.startswith("/statuspage/"):
            return "statuspage"
        if path.startswith("/pagerduty/"):
            return "pagerduty"
        if path == "/webhook" or path.startswith("/webhook/"):
            return "webhook"
        return "unknown"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        channel = self._channel(request.path)
        key = request.headers.get("Idempotency-Key")
        call = Call(
            channel=channel,
            method=request.method,
            path=request.path,
            idempotency_key=key,
            json=body,
            query=dict(request.query),
            headers={k: v for k, v in request.headers.items()},
        )
        self.calls.append(call)

        pending = self._failures.get(channel)
        if pending:
            call.status = pending.pop(0)
            call.injected = True
            return web.json_response({"error": "injected failure"}, status=call.status)

        cache_key = (channel, key) if key and request.method in _MUTATING else None
        if cache_key and cache_key in self._responses:
            stored = self._responses[cache_key]
            call.status = stored.status
            call.duplicate = True
            self.duplicates.append(call)
            return web.Response(status=stored.status, body=stored.body, content_type=stored.content_type)

        status, payload = await self._dispatch(channel, request, body)
        if isinstance(payload, str):
            resp = web.Response(status=status, text=payload, content_type="text/plain")
            stored = _Stored(status, payload.encode(), "text/plain")
        else:
            data = json.dumps(payload).encode()
            resp = web.Response(status=status, body=data, content_type="application/json")
            stored = _Stored(status, data, "application/json")
        call.status = status
        if cache_key:
            self._responses[cache_key] = stored
        return resp

    async def _healthy(self) -> bool:
        if self.health is None:
            return True
        return await _ask(self.health)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        self.metrics.advance(await self._healthy())
        # the format the scraper asks for (Prometheus 2.x: text 0.0.4; OpenMetrics when accepted)
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.metrics.registry), headers={"Content-Type": content_type})

    async def _dispatch(self, channel: str, request: web.Request, body: Any) -> tuple[int, Any]:
        method = request.method
        if channel == "health" and method in ("GET", "HEAD"):
            other = request.path.removeprefix("/health/") if request.path.startswith("/health/") else None
            if other is not None and other not in self.service_health:
                return 404, {"error": f"no service {other}"}
            healthy = await self._healthy() if other is None else await _ask(self.service_health[other])
            return (200, {"status": "ok"}) if healthy else (503, {"status": "unhealthy"})
        if channel == "slack" and method == "POST":
            if not isinstance(body, dict) or not body.get("text"):
                return 400, "no_text"
            return 200, "ok"
        if channel == "webhook" and method == "POST":
            return 200, {"ok": True}
        if channel == "pagerduty" and method == "POST":
            if request.path.endswith("/v2/change/enqueue"):
                return self._pagerduty_change(body)
            return self._pagerduty(body)
        if channel == "statuspage":
            return self._statuspage(method, request.path, dict(request.query), body)
        return 404, {"error": "not found"}

    def _pagerduty(self, body: Any) -> tuple[int, Any]:
        errors = []
        if not isinstance(body, dict):
            errors.append("Event object is invalid")
            body = {}
        if not body.get("routing_key"):
            errors.append("'routing_key' is missing or blank")
        if body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        payload = body.get("payload") or {}
        if body.get("event_action") == "trigger" and not (payload.get("summary") and payload.get("source")):
            errors.append("'payload.summary' and 'payload.source' are required")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        dedup_key = body.get("dedup_key") or f"pd-{next(self._ids)}"
        self.pages[dedup_key] = body
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}

    def _pagerduty_change(self, body: Any) -> tuple[int, Any]:
        """Events API v2 change events: a routing key and a payload summary (1,024 characters
        at most); `links` and `custom_details` optional."""
        payload = body.get("payload") if isinstance(body, dict) else None
        errors = []
        if not isinstance(body, dict) or not body.get("routing_key"):
            errors.append("'routing_key' is missing or blank")
        if not isinstance(payload, dict) or not payload.get("summary") or len(str(payload.get("summary"))) > 1024:
            errors.append("'payload.summary' is missing or too long")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        self.changes.append(body)
        return 202, {"status": "success", "message": "Change event processed"}

    def _statuspage(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """Statuspage's incidents API as its OpenAPI describes it (api.statuspage.io/v1): the
        incident statuses and component statuses are its enums, `metadata` is kept and listed,
        `components` sets the page's components (kept in `self.components`)."""
        # /statuspage/v1/pages/{page_id}/incidents[/{id}]
        parts = [p for p in path.split("/") if p]
        if len(parts) < 5 or parts[2] != "pages" or parts[4] != "incidents":
            return 404, {"error": "not found"}
        page_id = parts[3]
        incident_id = parts[5] if len(parts) > 5 else None
        fields = (body or {}).get("incident") if isinstance(body, dict) else None
        if isinstance(fields, dict):
            problem = _statuspage_problem(fields)
            if problem:
                return 422, {"error": problem}
        if incident_id is None and method == "GET":
            q = query.get("q", "").lower()
            found = [
                i for i in self.incidents.values() if i["page_id"] == page_id and (not q or q in i["name"].lower())
            ]
            found.sort(key=lambda i: i.get("created_at", ""), reverse=True)  # newest first, as Statuspage lists them
            return 200, found[: int(query.get("limit", "100"))]
        if incident_id is None and method == "POST":
            if not isinstance(fields, dict) or not fields.get("name"):
                return 422, {"error": "incident.name is required"}
            new_id = f"inc{next(self._ids):04d}"
            now = _now()
            created = {
                "id": new_id,
                "page_id": page_id,
                "name": fields["name"],
                "status": fields.get("status", "investigating"),
                "impact_override": fields.get("impact_override"),
                "metadata": fields.get("metadata") or {},
                "components": [],
                "created_at": now,
                "updated_at": now,
                "incident_updates": [],
            }
            self.incidents[new_id] = created
            self._statuspage_update(created, fields, now)
            return 201, created
        if incident_id is not None:
            incident = self.incidents.get(incident_id)
            if incident is None or incident["page_id"] != page_id:
                return 404, {"error": "incident not found"}
            if method == "GET":
                return 200, incident
            if method == "PATCH":
                if not isinstance(fields, dict):
                    return 422, {"error": "incident is required"}
                now = _now()
                for k in ("name", "status", "impact_override", "metadata"):
                    if k in fields:
                        incident[k] = fields[k]
                incident["updated_at"] = now
                self._statuspage_update(incident, fields, now)
                return 200, incident
        return 405, {"error": "method not allowed"}

    def _statuspage_update(self, incident: dict[str, Any], fields: dict[str, Any], now: str) -> None:
        changed = fields.get("components") or {}
        for cid, status in changed.items():
            self.components[cid] = status
        incident["components"] = [{"id": c, "status": self.components[c]}
                                  for c in sorted({*(c["id"] for c in incident["components"]), *changed})]
        if "status" in fields or "body" in fields or changed:
            incident["incident_updates"].append({
                "status": incident["status"], "body": fields.get("body", ""), "created_at": now,
                "affected_components": [{"code": c, "new_status": s} for c, s in changed.items()]})


SANDBOX_COMPONENT = "cmp-api-gateway"  # the sandbox page's component for the gateway
INCIDENT_STATUSES = {"investigating", "identified", "monitoring", "resolved", "scheduled", "in_progress",
                     "verifying", "completed"}
COMPONENT_STATUSES = {"operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage"}


def _statuspage_problem(fields: dict[str, Any]) -> str | None:
    """What Statuspage would refuse (422) in an incident's fields, per its OpenAPI enums."""
    if "status" in fields and fields["status"] not in INCIDENT_STATUSES:
        return f"incident.status {fields['status']!r} is not one of Statuspage's"
    comps = fields.get("components", {})
    if not isinstance(comps, dict) or any(v not in COMPONENT_STATUSES for v in comps.values()):
        return "incident.components must map component IDs to Statuspage component statuses"
    ids = fields.get("component_ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return "incident.component_ids must be a list of component IDs"
    meta = fields.get("metadata", {})
    if not isinstance(meta, dict) or not all(isinstance(v, dict) for v in meta.values()):
        return "incident.metadata must be an object of objects"
    return None


async def _serve(host: str, port: int) -> None:
    async with Receiver(host=host, port=port) as r:
        print(f"receiver on {r.url}")
        for name in ("slack_url", "slack_api_url", "statuspage_url", "pagerduty_url", "webhook_url", "health_url"):
            print(f"  {name}: {getattr(r, name)}")
        print(f"  metrics: {r.url}/metrics")
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()


async def _ask(health: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = health()
    return bool(await result) if inspect.isawaitable(result) else bool(result)
