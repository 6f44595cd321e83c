"""`POST /slack/interactions`: the IC's Approve / Reject clicks on a proposal's Slack message.

Who clicked is what Slack signed, never what a body says: the request must carry a valid
Slack signature (signing secret from `slack.signing_secret_env`, at most 5 minutes old), the
Slack user must be mapped in `slack.users` to a principal in the API's token book, and that
principal must hold the commander (or admin) role. The decision then takes the same path as
`POST /incidents/{id}/decisions`: signed for that principal (worker.identity), so the worker
verifies the proof and the workflow's own rules decide (the IC or an approver; two-person rule).
A refusal is an ephemeral message to the clicker (or the modal's error); nothing changes.

Slack's rate limits (429 with Retry-After) on the calls made here are waited out by slack_sdk's
own handler, bounded (`click_retry_handlers`); its connection-error retry stays.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client

from activities.slack_retry import BoundedRateLimitRetry
from domain.config import CodeBlueConfig
from domain.incident import Decision, DecisionResult
from domain.slack import (
    APPROVE,
    REJECT,
    REJECT_MODAL,
    SlackProposalRequest,
    parse_button_value,
    parse_private_metadata,
    proposal_blocks,
    proposal_from_metadata,
    proposal_text,
    reason_value,
    reject_modal,
)
from starters import service as svc
from starters.api.auth import COMMANDER, Principal, TokenBook
from starters.api.problems import Problem

log = logging.getLogger("codeblue.api.slack")
ERROR_MAX = 300  # a modal's error text is shown under the input
# Every Slack call here runs after Slack got its answer (a click is acknowledged first; a modal's
# submission redraws its message after the empty 200), so a 429 may be waited out; but no longer
# than a redraw is worth (the workflow redraws the message too), and views.open's trigger_id
# expires 3 s after the click: one retry, Retry-After <= 1 s (<= 2 s with slack_sdk's jitter).
AFTER_ACK_METHODS = ("chat.update", "chat.postEphemeral", "conversations.history")
AFTER_ACK_RETRIES, AFTER_ACK_WAIT_MAX = 2, 5  # <= 2 x (5 + 1) = 12 s asleep per call
TRIGGER_METHODS = ("views.open",)
TRIGGER_RETRIES, TRIGGER_WAIT_MAX = 1, 1
REDRAW_CHECK_AFTER = 1.0  # s: a chat.update slower than this waited out a 429; check what it drew


def click_retry_handlers() -> list[AsyncRetryHandler]:
    """The API's Slack client: slack_sdk's default connection-error retry, and its rate-limit
    handler bounded per method (after the ack; views.open within its trigger's 3 s)."""
    return [
        AsyncConnectionErrorRetryHandler(),
        BoundedRateLimitRetry(TRIGGER_METHODS, max_retry_count=TRIGGER_RETRIES, max_wait_seconds=TRIGGER_WAIT_MAX),
        BoundedRateLimitRetry(AFTER_ACK_METHODS, max_retry_count=AFTER_ACK_RETRIES,
                              max_wait_seconds=AFTER_ACK_WAIT_MAX),
    ]


def _first(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def slack_router(cfg: CodeBlueConfig, tokens: TokenBook, client: Callable[[], Awaitable[Client]],
                 bounded: Callable[..., Awaitable[Any]], env: Mapping[str, str] | None = None,
                 web: AsyncWebClient | None = None) -> APIRouter:
    """`client` and `bounded` are the app's own (Temporal, timeouts and signing as a principal).
    The signing secret and bot token are read from the environment once, here."""
    sc = cfg.slack
    e = os.environ if env is None else env
    secret = e.get(sc.signing_secret_env) or None
    verifier = SignatureVerifier(secret) if secret else None
    web = web or AsyncWebClient(token=e.get(sc.bot_token_env) or None, base_url=sc.api_url,
                                timeout=sc.timeout_seconds, retry_handlers=click_retry_handlers())
    r = APIRouter(tags=["slack"])

    # ------------------------------------------------------------------ who clicked
    def principal_of(payload: dict) -> tuple[Principal | None, str | None]:
        uid = str(_first(payload, "user", "id") or "")
        name = sc.users.get(uid)
        if not name:
            return None, (f"Your Slack user ({uid or 'unknown'}) is not mapped to a CodeBlue person "
                          "(slack.users): nothing was decided.")
        p = tokens.by_name(name)
        if p is None:
            return None, f"{name} has no CodeBlue API token: nothing was decided."
        if not p.has(COMMANDER):
            return None, f"{name} lacks the commander role: nothing was decided."
        return p, None

    def channel_problem(channel: str) -> str | None:
        if sc.channel and channel != sc.channel:
            return "CodeBlue takes decisions only from its incident channel (slack.channel): nothing was decided."
        return None

    # ------------------------------------------------------------------ Slack calls (best effort)
    async def slack(method: str, **kwargs: Any) -> Any:
        try:
            return await getattr(web, method.replace(".", "_"))(**kwargs)
        except SlackApiError as err:
            log.warning("slack %s failed: %s", method, err.response.get("error") if err.response else "?")
        except (SlackClientError, OSError, TimeoutError) as err:
            log.warning("slack %s failed: %s", method, type(err).__name__)
        return None

    async def ephemeral(channel: str, user: str, text: str) -> None:
        await slack("chat.postEphemeral", channel=channel, user=user, text=text)

    # ------------------------------------------------------------------ deciding
    async def decide(p: Principal, incident_id: str, d: Decision) -> tuple[DecisionResult | None, str | None]:
        """The decide endpoint's path: signed for `p`; the workflow's validator has the last word."""
        try:
            c = await client()
            return await bounded(svc.decide(c, incident_id, d), p), None
        except svc.CodeBlueError as err:
            return None, str(err).removeprefix("decision rejected: ")
        except Problem as err:
            return None, err.detail

    async def current(incident_id: str, action_id: str) -> tuple[Any, Any] | None:
        """The incident's report and the action as the workflow holds it now (None: not an
        incident, e.g. a playbook, or no answer)."""
        try:
            report = await bounded(svc.status(await client(), incident_id))
        except Exception:  # noqa: BLE001 - best effort: the decision is already taken
            return None
        act = next((a for a in report.actions if a.id == action_id), None)
        return (report, act) if act is not None else None

    async def proposal_for(incident_id: str, action_id: str, channel: str, ts: str, message: dict | None,
                           now: tuple[Any, Any] | None) -> SlackProposalRequest | None:
        """What CodeBlue posted (the message's metadata), else the incident's own report."""
        meta = _first(message, "metadata")
        if meta is None:
            resp = await slack("conversations.history", channel=channel, latest=ts, inclusive=True, limit=1,
                               include_all_metadata=True)
            msgs = [m for m in ((resp or {}).get("messages") or []) if m.get("ts") == ts]
            meta = msgs[0].get("metadata") if msgs else None
        prop = proposal_from_metadata(meta)
        if prop is not None and (prop.incident_id, prop.action_id) == (incident_id, action_id):
            return prop
        if now is None:
            return None
        report, act = now
        return SlackProposalRequest(incident_id=incident_id, action_id=act.id, kind=act.kind.value,
                                    reason=act.reason, severity=report.severity.value,
                                    commander=report.commander, idempotency_key=f"{incident_id}:{act.id}")

    def drawing(res: DecisionResult, by: str | None, reason: str | None,
                now: tuple[Any, Any] | None) -> tuple[str, str | None, str | None]:
        """What the message should show (state, by, detail): the decision, unless the workflow
        moved on already."""
        state = res.state.value
        detail = reason if state == "rejected" else (res.message if state == "proposed" else None)
        if state not in ("proposed", "approved", "rejected"):
            by = None  # withdrawn or run by CodeBlue (a late click on a superseded proposal): not the clicker's
        if now is not None and (now[1].state.value not in ("proposed", state) or by is None):
            # the workflow moved on already (executed, failed, ...): never draw an older state
            act = now[1]
            state = act.state.value
            by, detail = ((act.approved_by or act.decided_by or by), None) if state == "approved" else \
                ((act.decided_by or by), act.rejection_reason) if state == "rejected" else (None, act.result)
        return state, by, detail

    async def update_message(incident_id: str, action_id: str, channel: str, ts: str, res: DecisionResult,
                             by: str | None, reason: str | None, message: dict | None = None) -> None:
        now = await current(incident_id, action_id)
        prop = await proposal_for(incident_id, action_id, channel, ts, message, now)
        if prop is None:
            log.warning("slack: no proposal to redraw for %s %s", incident_id, action_id)
            return
        view = drawing(res, by, reason, now)
        for _ in range(2):
            started = time.monotonic()
            await slack("chat.update", channel=channel, ts=ts, text=proposal_text(prop, *view),
                        blocks=proposal_blocks(prop, *view))
            if time.monotonic() - started < REDRAW_CHECK_AFTER:
                return
            # the call waited out a rate limit: the worker may have drawn a later state meanwhile,
            # which this drawing just overwrote; draw what the workflow holds now (once)
            again = drawing(res, by, reason, await current(incident_id, action_id))
            if again == view:
                return
            view = again

    # ------------------------------------------------------------------ interactions
    async def on_block_actions(payload: dict) -> None:
        """Runs after Slack got its 200 (Slack wants an answer within 3 seconds)."""
        user = str(_first(payload, "user", "id") or "")
        channel = str(_first(payload, "channel", "id") or _first(payload, "container", "channel_id") or "")
        ts = str(_first(payload, "message", "ts") or _first(payload, "container", "message_ts") or "")
        for act in payload.get("actions") or []:
            # a button is known by its action_id and value, never its block_id (which changes
            # with each redraw of the message: domain.slack.with_revision)
            kind = act.get("action_id")
            if kind not in (APPROVE, REJECT):
                continue
            try:
                incident_id, action_id = parse_button_value(str(act.get("value") or ""))
            except ValueError:
                continue
            why = channel_problem(channel)
            p, refused = principal_of(payload)
            if why or refused:
                await ephemeral(channel, user, why or refused or "")
                return
            assert p is not None
            if kind == REJECT:  # the reason comes from a modal; its submission decides
                await slack("views.open", trigger_id=str(payload.get("trigger_id") or ""),
                            view=reject_modal(incident_id, action_id, channel, ts))
                return
            res, problem = await decide(p, incident_id, Decision(action_id=action_id, approve=True, by=p.name))
            if problem or res is None:
                await ephemeral(channel, user, f"Not approved: {problem}")
                return
            await update_message(incident_id, action_id, channel, ts, res, p.name, None, payload.get("message"))
            return

    async def guarded(work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as err:  # noqa: BLE001 - after the response: log the class, never the payload
            log.warning("slack interaction failed: %s", type(err).__name__)

    def modal_errors(field: str, text: str) -> JSONResponse:
        return JSONResponse({"response_action": "errors", "errors": {field: text[:ERROR_MAX]}})

    async def on_reject_submission(payload: dict, background: BackgroundTasks) -> Response:
        view = payload.get("view") or {}
        # the input's block_id found by its prefix (REASON_BLOCK), and errors shown under that one
        reason, field = reason_value(view)
        try:
            incident_id, action_id, channel, ts = parse_private_metadata(str(view.get("private_metadata") or ""))
        except ValueError:
            return modal_errors(field, "This form does not name a CodeBlue proposal.")
        why = channel_problem(channel)
        p, refused = principal_of(payload)
        if why or refused:
            return modal_errors(field, why or refused or "")
        assert p is not None
        res, problem = await decide(p, incident_id,
                                    Decision(action_id=action_id, approve=False, by=p.name, reason=reason))
        if problem or res is None:
            return modal_errors(field, f"Not rejected: {problem}")
        background.add_task(guarded, update_message(incident_id, action_id, channel, ts, res, p.name, reason))
        return Response(status_code=200)  # an empty 200 closes the modal

    # Slack's Request URL, not part of the bearer-token API (README "Slack"): out of the OpenAPI
    # schema, whose clients (and its fuzzing test) cannot sign as Slack does
    @r.post("/slack/interactions", include_in_schema=False)
    async def interactions(request: Request, background: BackgroundTasks) -> Response:
        """Slack's interactivity Request URL. Authenticated by Slack's signature, not a bearer token."""
        if verifier is None:
            raise Problem(503, f"Slack interactivity is not configured: ${sc.signing_secret_env} is unset")
        body = await request.body()
        try:
            valid = verifier.is_valid_request(body, dict(request.headers))
        except (ValueError, UnicodeDecodeError):  # a non-numeric timestamp, a body that is not text
            valid = False
        if not valid:
            raise Problem(401, "invalid Slack signature, or a timestamp more than 5 minutes old")
        try:
            payload = json.loads(parse_qs(body.decode(), strict_parsing=False).get("payload", [""])[0])
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            raise Problem(400, "expected a form field `payload` with Slack's interaction JSON") from None
        kind = payload.get("type")
        if kind == "block_actions":
            background.add_task(guarded, on_block_actions(payload))
            return Response(status_code=200)
        if kind == "view_submission" and _first(payload, "view", "callback_id") == REJECT_MODAL:
            return await on_reject_submission(payload, background)
        return Response(status_code=200)  # anything else: acknowledged, nothing done

    return r
