"""Post-incident side effects: user-facing smoke checks and booking the post-mortem."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deferred import deferred
from activities.http_client import HttpActivities
from activities.targets import Targets
from domain.config import PostIncidentConfig
from domain.notify import Delivery
from domain.post_incident import CalendarInvite, SmokeCheckRequest, SmokeCheckResult

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; httpx load only where an activity uses them.
if TYPE_CHECKING:
    import httpx
else:
    httpx = deferred("httpx")

ALLOWED_METHODS = {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"}


class PostIncidentActivities(HttpActivities):
    def __init__(self, config: PostIncidentConfig, http: httpx.AsyncClient | None = None, *,
                 targets: Targets | None = None) -> None:
        super().__init__(http)
        self.config = config
        self.targets = targets

    @activity.defn
    async def smoke_check(self, req: SmokeCheckRequest) -> SmokeCheckResult:
        """One request a user would make; a wrong status is an answer, not an error to retry."""
        if self.targets:
            self.targets.smoke_check(req)
        method = req.method.upper()
        if method not in ALLOWED_METHODS:
            raise ApplicationError(f"smoke check {req.name}: method {req.method!r} not allowed", type="BadConfig", non_retryable=True)
        try:
            resp = await self.http.request(method, req.url, timeout=req.timeout_seconds)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            raise ApplicationError(
                f"smoke check {req.name}: URL not usable ({type(e).__name__})", type="BadConfig", non_retryable=True
            ) from None
        except httpx.HTTPError as e:
            return SmokeCheckResult(name=req.name, ok=False, detail=f"{method} failed ({type(e).__name__})")
        ok = resp.status_code == req.expected_status
        return SmokeCheckResult(
            name=req.name,
            ok=ok,
            status=resp.status_code,
            detail=f"{method} -> {resp.status_code} (expected {req.expected_status})",
        )

    @activity.defn
    async def schedule_postmortem(self, invite: CalendarInvite) -> Delivery:
        """POST the calendar-style invite; the Idempotency-Key makes a retry book it once."""
        url = self.config.calendar_webhook_url
        if not url:
            return Delivery(channel="calendar", delivered=False, skipped=True, detail="calendar webhook not configured")
        body = invite.model_dump(exclude={"idempotency_key"})
        try:
            resp = await self.http.post(url, json=body, headers={"Idempotency-Key": invite.idempotency_key}, timeout=10.0)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            raise ApplicationError(f"calendar: URL not usable ({type(e).__name__})", type="BadConfig", non_retryable=True) from None
        except httpx.HTTPError as e:
            # the URL may embed a token: name the error type only
            raise ApplicationError(f"calendar: request failed ({type(e).__name__})", type="NotificationUnavailable") from None
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise ApplicationError(f"calendar: HTTP {resp.status_code}", type="NotificationUnavailable")
        if not 200 <= resp.status_code < 300:
            raise ApplicationError(f"calendar: HTTP {resp.status_code}", type="NotificationRejected", non_retryable=True)
        return Delivery(channel="calendar", delivered=True, detail=f"post-mortem booked {invite.start} - {invite.end}")
