"""Slack Web API activities: one message per proposal in the incident channel, updated in place.

The channel is the worker's `slack.channel`, never a request's; the bot token comes from the
worker's environment (`slack.bot_token_env`) and never appears in a result, an error or a log.
Temporal retries, not slack_sdk, and a retried post first looks for the message an earlier
attempt may have posted (message metadata carries the idempotency key). The one exception: a
rate limit (429, Retry-After) on an idempotent call (chat.update, conversations.history) is
waited out in the call by slack_sdk's rate-limit handler (once, Retry-After <= 5 s); on
chat.postMessage, or past that bound, the activity fails retryably with Temporal's
`next_retry_delay` set to Retry-After.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deferred import deferred
from domain.config import SlackConfig
from domain.slack import (
    EVENT_TYPE,
    SlackMessageRef,
    SlackPostResult,
    SlackProposalRequest,
    SlackUpdateRequest,
    proposal_blocks,
    proposal_metadata,
    proposal_text,
)

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; slack_sdk and aiohttp load only where an activity uses them.
if TYPE_CHECKING:
    import aiohttp
    import slack_sdk.errors
    import slack_sdk.web.async_client as slack_async
    from slack_sdk.web.async_client import AsyncWebClient

    import activities.slack_retry as slack_retry
else:
    aiohttp = deferred("aiohttp")
    slack_sdk = deferred("slack_sdk")  # binds slack_sdk.errors
    slack_async = deferred("slack_sdk.web.async_client")
    slack_retry = deferred("activities.slack_retry")  # subclasses a slack_sdk handler

# Slack answers most failures with HTTP 200 and ok=false; these few are worth retrying.
RETRYABLE_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
HISTORY_LIMIT = 200  # how far back a retried post looks for its earlier message
# slack_sdk waits out a 429 only on these: the same request gives the same result (never
# chat.postMessage, whose 429 becomes Temporal's retry after Retry-After, see slack_failure)
IDEMPOTENT_METHODS = ("chat.update", "conversations.history")
RATE_LIMIT_WAIT_MAX = 5  # s of Retry-After waited in the call: 1 retry, <= 6 s, inside the 30 s start-to-close


def slack_failure(e: Exception, method: str) -> ApplicationError:
    """A Slack failure as Temporal sees it: retryable (rate limit, 5xx, network) or not
    (auth, channel, anything else Slack refused). Only Slack's error code is kept: never a
    token, never the request."""
    if isinstance(e, slack_sdk.errors.SlackApiError):
        resp = e.response
        status = getattr(resp, "status_code", 0) or 0
        error = resp.get("error") if isinstance(getattr(resp, "data", None), dict) else None
        error = str(error or f"HTTP {status}")[:100]
        if error in RETRYABLE_ERRORS or status == 429 or status >= 500:
            delay = None
            after = (getattr(resp, "headers", None) or {}).get("retry-after") or \
                (getattr(resp, "headers", None) or {}).get("Retry-After")
            try:
                delay = timedelta(seconds=min(max(float(after), 0.0), 300.0)) if after else None
            except (TypeError, ValueError):
                delay = None
            return ApplicationError(f"slack {method}: {error}", type="NotificationUnavailable",
                                    next_retry_delay=delay)
        return ApplicationError(f"slack {method}: {error}", type="NotificationRejected", non_retryable=True)
    if isinstance(e, slack_sdk.errors.SlackRequestError):
        return ApplicationError(f"slack {method}: request not usable ({type(e).__name__})", type="BadConfig",
                                non_retryable=True)
    # aiohttp / timeout / OS errors: the text may carry the URL; name the type only
    return ApplicationError(f"slack {method}: request failed ({type(e).__name__})", type="NotificationUnavailable")


def rate_limit_retry() -> slack_retry.BoundedRateLimitRetry:
    """slack_sdk's rate-limit handler for the activities' client: chat.update and
    conversations.history only (a 429 means Slack did nothing; repeating them changes nothing)."""
    return slack_retry.BoundedRateLimitRetry(IDEMPOTENT_METHODS, max_retry_count=1,
                                             max_wait_seconds=RATE_LIMIT_WAIT_MAX)


class SlackActivities:
    def __init__(self, cfg: SlackConfig, token: str | None, client: AsyncWebClient | None = None) -> None:
        self.cfg = cfg
        self.token = token or None
        # no connection-error retry: one after Slack took the post would post twice (Temporal's
        # retry looks for the earlier message first); a 429 is retried on idempotent calls only
        if client is None:
            client = slack_async.AsyncWebClient(token=self.token, base_url=cfg.api_url,
                                                timeout=cfg.timeout_seconds, retry_handlers=[rate_limit_retry()])
        self.client = client

    async def _call(self, method: str, **kwargs: Any) -> Any:
        """One Web API method through slack_sdk's typed call (chat.postMessage -> chat_postMessage)."""
        fn = getattr(self.client, method.replace(".", "_"))
        try:
            return await fn(**kwargs)
        # network errors too (aiohttp, timeouts, OS), named here: a module constant would load aiohttp
        except (TimeoutError, slack_sdk.errors.SlackApiError, slack_sdk.errors.SlackRequestError, aiohttp.ClientError, OSError) as e:
            raise slack_failure(e, method) from None

    def _skip(self) -> SlackPostResult | None:
        if not self.token:
            return SlackPostResult(delivered=False, skipped=True,
                                   detail=f"slack bot token not configured (${self.cfg.bot_token_env})")
        if not self.cfg.channel:
            return SlackPostResult(delivered=False, skipped=True, detail="slack.channel not configured")
        return None

    async def find_posted(self, idempotency_key: str) -> SlackMessageRef | None:
        """The message an earlier attempt posted with this key, if it is in the last
        HISTORY_LIMIT messages of the channel."""
        channel = self.cfg.channel
        assert channel
        resp = await self._call("conversations.history", channel=channel, limit=HISTORY_LIMIT,
                                include_all_metadata=True)
        for m in resp.get("messages") or []:
            meta = m.get("metadata") or {}
            if meta.get("event_type") == EVENT_TYPE and \
                    (meta.get("event_payload") or {}).get("idempotency_key") == idempotency_key and m.get("ts"):
                return SlackMessageRef(channel=channel, ts=str(m["ts"]))
        return None

    @activity.defn
    async def slack_post_proposal(self, req: SlackProposalRequest) -> SlackPostResult:
        skipped = self._skip()
        if skipped:
            return skipped
        if activity.info().attempt > 1:
            earlier = await self.find_posted(req.idempotency_key)
            if earlier:
                return SlackPostResult(delivered=True, detail="already posted by an earlier attempt", ref=earlier)
        resp = await self._call("chat.postMessage", channel=self.cfg.channel, text=proposal_text(req),
                                blocks=proposal_blocks(req), metadata=proposal_metadata(req),
                                unfurl_links=False, unfurl_media=False)
        return SlackPostResult(delivered=True, detail="proposal posted",
                               ref=SlackMessageRef(channel=str(resp["channel"]), ts=str(resp["ts"])))

    @activity.defn
    async def slack_update_proposal(self, req: SlackUpdateRequest) -> SlackPostResult:
        """chat.update is idempotent: the same request gives the same message."""
        skipped = self._skip()
        if skipped:
            return skipped
        if req.ref.channel != self.cfg.channel:
            # the worker's config decides where CodeBlue acts, also for an older message
            return SlackPostResult(delivered=False, skipped=True, ref=req.ref,
                                   detail="the message is not in slack.channel; not updated")
        p = req.proposal
        await self._call("chat.update", channel=req.ref.channel, ts=req.ref.ts,
                         text=proposal_text(p, req.state, req.by, req.detail),
                         blocks=proposal_blocks(p, req.state, req.by, req.detail))
        return SlackPostResult(delivered=True, detail=f"proposal updated: {req.state}", ref=req.ref)
