"""Slack Web API activities: the incident's own channel (`slack_open_channel`), and one message
per proposal in the incident channel, updated in place.

The channel is the worker's `slack.channel`, never a request's; the bot token comes from the
worker's environment (`slack.bot_token_env`) and never appears in a result, an error or a log.
Temporal retries, not slack_sdk, and a retried post first looks for the message an earlier
attempt may have posted (message metadata carries the idempotency key). The one exception: a
rate limit (429, Retry-After) on an idempotent call (chat.update, conversations.history) is
waited out in the call by slack_sdk's rate-limit handler (once, Retry-After <= 5 s); on
chat.postMessage, or past that bound, the activity fails retryably with Temporal's
`next_retry_delay` set to Retry-After.

`slack_open_channel` is idempotent under Temporal's retries: the channel's name is a function of
the incident ID, so a retry whose earlier attempt created it gets `name_taken` and finds it
(`conversations.list`, a channel this bot created); invites accept `already_in_channel`, the
topic is set again to the same words, and the bookmark is added only if the channel has none
with the same link (`bookmarks.list`).
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
    SlackBatchResult,
    SlackChannelRef,
    SlackChannelRequest,
    SlackChannelResult,
    SlackMessageRef,
    SlackPostResult,
    SlackProposalBatch,
    SlackUpdateRequest,
    channel_name,
    channel_summary,
    channel_topic,
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
# conversations.invite answers for one user: in the channel already (fine), or refused for that
# user alone (named in the result; the others are still invited)
IN_CHANNEL = {"already_in_channel", "cant_invite_self"}
USER_REFUSALS = {"user_not_found", "cant_invite", "user_is_restricted", "user_is_ultra_restricted",
                 "ura_max_channels", "user_is_bot", "user_disabled", "user_is_deleted"}
LIST_PAGE, LIST_PAGES_MAX = 1000, 50  # conversations.list: how far a retry looks for its channel


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
    def __init__(self, cfg: SlackConfig, token: str | None, client: AsyncWebClient | None = None,
                 ui_base_url: str | None = None) -> None:
        """`ui_base_url`: the worker's Temporal UI (`ui.base_url`); an incident channel's bookmark
        must link under it (None: no bookmark), whatever a request asks."""
        self.cfg = cfg
        self.token = token or None
        self.ui_base = (ui_base_url or "").rstrip("/")
        # no connection-error retry: one after Slack took the post would post twice (Temporal's
        # retry looks for the earlier message first); a 429 is retried on idempotent calls only
        if client is None:
            client = slack_async.AsyncWebClient(token=self.token, base_url=cfg.api_url,
                                                timeout=cfg.timeout_seconds, retry_handlers=[rate_limit_retry()])
        self.client = client

    async def _call(self, method: str, **kwargs: Any) -> Any:
        """One Web API method through slack_sdk's typed call (chat.postMessage -> chat_postMessage)."""
        resp, _ = await self._answer(method, set(), **kwargs)
        return resp

    async def _answer(self, method: str, accept: set[str], **kwargs: Any) -> tuple[Any, str | None]:
        """One Web API method: (its response, None), or (None, Slack's error code) when that
        code is one of `accept`; any other failure raises as `slack_failure` maps it."""
        fn = getattr(self.client, method.replace(".", "_"))
        try:
            return await fn(**kwargs), None
        # network errors too (aiohttp, timeouts, OS), named here: a module constant would load aiohttp
        except (TimeoutError, slack_sdk.errors.SlackApiError, slack_sdk.errors.SlackRequestError, aiohttp.ClientError, OSError) as e:
            if isinstance(e, slack_sdk.errors.SlackApiError) and isinstance(getattr(e.response, "data", None), dict):
                code = e.response.get("error")
                if code in accept and getattr(e.response, "status_code", 200) == 200:
                    return None, str(code)
            raise slack_failure(e, method) from None

    def _skip(self) -> SlackPostResult | None:
        if not self.token:
            return SlackPostResult(delivered=False, skipped=True,
                                   detail=f"slack bot token not configured (${self.cfg.bot_token_env})")
        if not self.cfg.channel:
            return SlackPostResult(delivered=False, skipped=True, detail="slack.channel not configured")
        return None

    async def find_posted(self, keys: set[str]) -> dict[str, SlackMessageRef]:
        """The messages an earlier attempt posted with these keys, among the last
        HISTORY_LIMIT messages of the channel (one read for the whole round)."""
        channel = self.cfg.channel
        assert channel
        resp = await self._call("conversations.history", channel=channel, limit=HISTORY_LIMIT,
                                include_all_metadata=True)
        found: dict[str, SlackMessageRef] = {}
        for m in resp.get("messages") or []:
            meta = m.get("metadata") or {}
            key = (meta.get("event_payload") or {}).get("idempotency_key")
            if meta.get("event_type") == EVENT_TYPE and key in keys and m.get("ts"):
                found.setdefault(key, SlackMessageRef(channel=channel, ts=str(m["ts"])))
        return found

    @activity.defn
    async def slack_post_proposals(self, batch: SlackProposalBatch) -> SlackBatchResult:
        """A round of proposals, one message each, in order. A retry (after a timeout, a 5xx
        or a rate limit past its handler) finds what an earlier attempt posted and posts only
        the rest; a refusal for good of one message is its result, and the rest still go."""
        skipped = self._skip()
        if skipped:
            return SlackBatchResult(results=[skipped] * len(batch.requests))
        earlier = await self.find_posted({r.idempotency_key for r in batch.requests}) \
            if activity.info().attempt > 1 else {}
        results = []
        for req in batch.requests:
            ref = earlier.get(req.idempotency_key)
            if ref is not None:
                results.append(SlackPostResult(delivered=True, detail="already posted by an earlier attempt", ref=ref))
                continue
            try:
                resp = await self._call("chat.postMessage", channel=self.cfg.channel, text=proposal_text(req),
                                        blocks=proposal_blocks(req), metadata=proposal_metadata(req),
                                        unfurl_links=False, unfurl_media=False)
            except ApplicationError as e:
                if not e.non_retryable:
                    raise
                results.append(SlackPostResult(delivered=False, detail=e.message))
                continue
            results.append(SlackPostResult(delivered=True, detail="proposal posted",
                                           ref=SlackMessageRef(channel=str(resp["channel"]), ts=str(resp["ts"]))))
        return SlackBatchResult(results=results)

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

    # ------------------------------------------------------------------ the incident channel

    @activity.defn
    async def slack_open_channel(self, req: SlackChannelRequest) -> SlackChannelResult:
        """The incident's own channel: created (or found, when an earlier attempt created it),
        the IC and responders that have a Slack user ID invited, the topic set to public words
        only, the incident's Temporal UI link bookmarked. A refusal of the channel itself fails
        the activity (invalid_auth, missing_scope: for good; ratelimited: retried after
        Retry-After); one of a later step is named in the result and the channel stays."""
        if not self.token:
            return SlackChannelResult(opened=False, skipped=True,
                                      detail=f"slack bot token not configured (${self.cfg.bot_token_env})")
        name = channel_name(req.incident_id, self.cfg.channel_prefix)
        channel, reused = await self._create_channel(name)
        out = SlackChannelResult(opened=True, reused=reused, channel=channel)
        await self._later(out, self._invite(out, channel.id, req))
        topic = channel_topic(req.incident_id, req.severity, req.service, req.owners_channel)
        if await self._later(out, self._call("conversations.setTopic", channel=channel.id, topic=topic)):
            out.topic = topic
        if req.link and not (self.ui_base and req.link.startswith(self.ui_base + "/namespaces/")):
            # the worker's config decides where CodeBlue points people: only its own Temporal UI
            out.problems.append("bookmark refused: the link is not under the worker's ui.base_url")
        elif req.link:
            out.bookmarked = bool(await self._later(out, self._bookmark(channel.id, req.link, req.link_title,
                                                                       check=reused)))
        out.detail = channel_summary(out)
        return out

    async def _later(self, out: SlackChannelResult, step: Any) -> Any:
        """A step after the channel exists: a refusal for good is noted (the channel stays and
        the incident learns its ID); anything worth retrying retries the whole activity, whose
        steps are all idempotent."""
        try:
            return (await step) or True
        except ApplicationError as e:
            if not e.non_retryable:
                raise
            out.problems.append(e.message)
            return False

    async def _create_channel(self, name: str) -> tuple[SlackChannelRef, bool]:
        resp, error = await self._answer("conversations.create", {"name_taken"}, name=name,
                                         is_private=self.cfg.private_channels)
        if error is None:
            ch = resp["channel"]
            return SlackChannelRef(id=str(ch["id"]), name=str(ch.get("name") or name)), False
        found = await self._own_channel(name)
        return found, True

    async def _own_channel(self, name: str) -> SlackChannelRef:
        """The channel named `name` that this bot created: an earlier attempt's. One someone
        else created (or an archived one) is not taken over: the step fails for good."""
        me = (await self._call("auth.test")).get("user_id")
        cursor: str | None = None
        for _ in range(LIST_PAGES_MAX):
            resp = await self._call("conversations.list", types="public_channel,private_channel",
                                    exclude_archived=False, limit=LIST_PAGE, cursor=cursor)
            for ch in resp.get("channels") or []:
                if ch.get("name") != name:
                    continue
                if not me or ch.get("creator") != me:
                    raise ApplicationError(f"slack conversations.create: name_taken: #{name} exists and was not "
                                           "created by CodeBlue's bot; not taken over", type="NotificationRejected",
                                           non_retryable=True)
                if ch.get("is_archived"):
                    raise ApplicationError(f"slack conversations.create: name_taken: #{name} is archived",
                                           type="NotificationRejected", non_retryable=True)
                return SlackChannelRef(id=str(ch["id"]), name=name)
            cursor = ((resp.get("response_metadata") or {}).get("next_cursor")) or None
            if not cursor:
                break
        # taken, yet not listed to this bot: someone else's private channel
        raise ApplicationError(f"slack conversations.create: name_taken: #{name} is not a channel this bot can see",
                               type="NotificationRejected", non_retryable=True)

    async def _invite(self, out: SlackChannelResult, channel: str, req: SlackChannelRequest) -> bool:
        """Each person's Slack user IDs (the worker's slack.users), one invite each: an
        `already_in_channel` counts as in; a person without an ID is named and skipped."""
        seen: set[str] = set()
        for p in req.people:
            if p.name in seen:
                continue
            seen.add(p.name)
            who = f"{p.name} ({p.role})"
            ids = [uid for uid, principal in self.cfg.users.items() if principal == p.name]
            if not ids:
                out.no_slack_id.append(who)
                continue
            refused = []
            for uid in ids:
                _, error = await self._answer("conversations.invite", IN_CHANNEL | USER_REFUSALS, channel=channel,
                                              users=uid)
                if error in USER_REFUSALS:
                    refused.append(error)
            if len(refused) < len(ids):
                out.invited.append(who)
            else:
                out.not_invited.append(f"{who}: {', '.join(sorted(set(refused)))}")
        return True

    async def _bookmark(self, channel: str, link: str, title: str, check: bool) -> bool:
        """bookmarks.add (type link), unless the channel, found again, has that link already."""
        if check:
            resp = await self._call("bookmarks.list", channel_id=channel)
            if any(b.get("link") == link for b in resp.get("bookmarks") or []):
                return True
        await self._call("bookmarks.add", channel_id=channel, title=title, type="link", link=link)
        return True
