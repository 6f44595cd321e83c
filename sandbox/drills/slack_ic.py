"""`codeblue drill --via slack`: the drill's IC decides through signed Slack interactions.

The CodeBlue API runs in this process (`create_app` under uvicorn on a free loopback port), its
token book holding the drill's IC as a commander and `slack.users` mapping a sandbox Slack user
to the IC. The IC reads the proposal messages the workflow posted to the sandbox's Slack Web API
stand-in (`receiver.slack_api`) and clicks as Slack would: Slack's form-encoded `payload`, signed `v0`
with the signing secret from the environment, to the API's real `POST /slack/interactions`.
Approve is one `block_actions`; Reject is `block_actions` -> the modal CodeBlue opens
(`views.open`) -> `view_submission` with the reason. Every interaction sent is listed
(`SlackIC.report()`, the drill's `slack_interactions`) with what the stand-in recorded for its
message since (`chat.update`s).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from activities.http_client import tls_context
from domain.config import ApiConfig, ApiToken, TemporalSettings
from domain.incident import ActionState
from domain.slack import (
    APPROVE,
    REASON_BLOCK,
    REASON_INPUT,
    REJECT,
    STATUS_BLOCK,
    find_block,
    is_block,
    outcome_line,
    proposal_from_metadata,
)
from starters import service
from starters.service import CodeBlueError

SLACK_IC_USER = "U0DRILLIC"  # the drill IC's Slack user in the sandbox workspace (slack.users)
APP_ID = "A0CODEBLUE"
WAIT = 60.0


def _status_line(msg: dict | None) -> str:
    """A proposal message's status line (the context block under it), as Slack shows it."""
    for b in (msg or {}).get("blocks") or []:
        if is_block(b.get("block_id"), STATUS_BLOCK) or b.get("type") == "context":  # any revision
            els = b.get("elements") or [{}]
            return html.unescape(str(els[0].get("text") or ""))
    return ""


async def _until(pred, what: str, timeout: float = WAIT):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (res := await pred()):
        if loop.time() > end:
            raise CodeBlueError(f"drill --via slack: timed out waiting for {what}")
        await asyncio.sleep(0.2)
    return res


class SlackIC:
    """The IC's hands in the incident channel (what `drive_incident` calls for --via slack)."""

    via = "slack"

    def __init__(self, ctx: Any, http: httpx.AsyncClient, secret: str, user: str = SLACK_IC_USER) -> None:
        self.ctx, self.http, self.user = ctx, http, user
        self.signer = SignatureVerifier(secret)
        self.stand_in = ctx.sandbox.receiver.slack_api
        self.channel = ctx.sandbox.config.slack.channel
        self.interactions: list[dict[str, Any]] = []  # as sent; report() adds what the stand-in recorded

    # ------------------------------------------------------------------ the channel
    def _message_of(self, iid: str, aid: str) -> dict | None:
        """The proposal's message, found by the metadata CodeBlue posted with it."""
        for m in self.stand_in.messages.get(self.channel, []):
            p = proposal_from_metadata(m.get("metadata"))
            if p is not None and (p.incident_id, p.action_id) == (iid, aid):
                return m
        return None

    async def message(self, iid: str, aid: str) -> dict:
        async def find():
            return self._message_of(iid, aid)

        return await _until(find, f"{aid}'s message in the incident channel {self.channel}")

    def _button(self, msg: dict, kind: str, must: bool = True) -> dict | None:
        for b in msg.get("blocks") or []:
            if b.get("type") == "actions":
                for el in b.get("elements") or []:
                    if el.get("action_id") == kind:
                        return {**el, "block_id": b.get("block_id")}
        if not must:
            return None
        raise CodeBlueError(f"drill --via slack: the message {msg.get('ts')} has no {kind} button "
                            f"(it shows: {_status_line(msg) or '?'})")

    # ------------------------------------------------------------------ Slack's requests
    async def _send(self, payload: dict, record: dict) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)})
        ts = str(int(time.time()))
        signature = self.signer.generate_signature(timestamp=ts, body=body)
        assert signature is not None  # None only without a timestamp
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": signature,
                   "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        r = await self.http.post("/slack/interactions", content=body, headers=headers)
        record.update(status=r.status_code)
        self.interactions.append(record)
        self.ctx.say(f"Slack: {record['type']} {record['action']} {record['action_id']} by {self.user} "
                     f"-> {r.status_code}", highlight=False, soft_wrap=True)
        if r.status_code != 200:
            raise CodeBlueError(f"drill --via slack: /slack/interactions answered {r.status_code}: {r.text[:300]}")
        return r

    def _block_actions(self, kind: str, msg: dict, trigger_id: str) -> dict:
        """A click on a button of a bot message, as Slack posts it to the Request URL."""
        button = {k: v for k, v in (self._button(msg, kind) or {}).items() if k != "confirm"}
        team = "T0SANDBOX"
        return {
            "type": "block_actions",
            "user": {"id": self.user, "username": "drill-ic", "name": "drill-ic", "team_id": team},
            "api_app_id": APP_ID,
            "token": "",  # the deprecated verification token: CodeBlue trusts the signature only
            "container": {"type": "message", "message_ts": msg["ts"], "channel_id": self.channel,
                          "is_ephemeral": False},
            "trigger_id": trigger_id,
            "team": {"id": team, "domain": "codeblue-sandbox"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": self.channel, "name": "incident"},
            "message": msg,  # with its metadata, as Slack echoes a message posted with metadata
            "state": {"values": {}},
            "response_url": f"https://hooks.slack.invalid/actions/{team}/{uuid.uuid4().hex[:10]}",
            "actions": [{**button, "action_ts": f"{time.time():.6f}"}],
        }

    def _trigger(self) -> str:
        return f"{int(time.time())}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"

    def _refusal(self, since: int) -> str | None:
        mine = [e for e in self.stand_in.ephemerals[since:] if e.get("user") == self.user]
        return mine[-1]["text"] if mine else None

    def _record(self, kind: str, action: str, aid: str, msg: dict) -> dict[str, Any]:
        return {"type": kind, "action": action, "action_id": aid, "user": self.user, "channel": self.channel,
                "message_ts": msg["ts"], "signed": "v0",
                "updates_before": len(self.stand_in.calls_to("chat.update"))}

    async def _state(self, iid: str, aid: str) -> ActionState:
        rep = await service.status(self.ctx.client, iid)
        return next(a.state for a in rep.actions if a.id == aid)

    # ------------------------------------------------------------------ the IC's moves
    async def approve(self, iid: str, aid: str, reason: str) -> None:  # a click carries no reason
        msg = await self.message(iid, aid)
        prop = proposal_from_metadata(msg.get("metadata"))
        if prop is not None and prop.recommended:
            self.ctx.say(f"Slack: {aid}'s message is marked Recommended ({prop.recommendation or 'ranked first'})",
                         highlight=False, soft_wrap=True)
        since = len(self.stand_in.ephemerals)
        await self._send(self._block_actions(APPROVE, msg, self._trigger()), self._record("block_actions", APPROVE, aid, msg))

        async def decided():  # the API acknowledges first and decides right after
            if (why := self._refusal(since)) is not None:
                raise CodeBlueError(f"drill --via slack: approving {aid} was refused: {why}")
            return (await self._state(iid, aid)) != ActionState.PROPOSED

        await _until(decided, f"the approval of {aid} from Slack")

    async def reject(self, iid: str, aid: str, reason: str) -> None:
        msg = await self.message(iid, aid)
        if self._button(msg, REJECT, must=False) is None:  # withdrawn meanwhile: nothing left to click
            self.ctx.say(f"Slack: {aid}'s message shows {_status_line(msg)!r}, no Reject button: not clicked",
                         highlight=False, soft_wrap=True)
            return
        since, views = len(self.stand_in.ephemerals), len(self.stand_in.views)
        trigger = self._trigger()
        await self._send(self._block_actions(REJECT, msg, trigger), self._record("block_actions", REJECT, aid, msg))

        async def opened():
            if (why := self._refusal(since)) is not None:
                raise CodeBlueError(f"drill --via slack: rejecting {aid} was refused: {why}")
            return next((v for v in self.stand_in.views[views:] if v["trigger_id"] == trigger), None)

        view = (await _until(opened, f"the reject modal for {aid} (views.open)"))["view"]
        # Slack keys the submitted state, and the answer's errors, by the input's own block_id
        field = str((find_block(view.get("blocks"), REASON_BLOCK) or {}).get("block_id") or REASON_BLOCK)
        submission = {
            "type": "view_submission",
            "user": {"id": self.user, "username": "drill-ic", "name": "drill-ic", "team_id": view.get("team_id")},
            "api_app_id": APP_ID, "token": "", "trigger_id": self._trigger(),
            "team": {"id": view.get("team_id"), "domain": "codeblue-sandbox"}, "is_enterprise_install": False,
            "view": {**view, "state": {"values": {field: {REASON_INPUT: {"type": "plain_text_input",
                                                                        "value": reason}}}}},
            "response_urls": [],
        }
        rec = self._record("view_submission", "reject", aid, msg)
        rec["view_id"] = view.get("id")
        r = await self._send(submission, rec)
        if r.content:  # an empty 200 closes the modal; anything else is the form's error
            errors = r.json().get("errors") or {}
            raise CodeBlueError(f"drill --via slack: rejecting {aid} was refused: "
                                f"{errors.get(field) or r.text[:300]}")

    async def settled(self, iid: str, aid: str) -> None:
        """Wait until the action's message shows the state the workflow holds (Executed, ...),
        drawn by a chat.update the stand-in recorded."""
        state = await self._state(iid, aid)
        word = outcome_line(state.value).split(":")[0]
        msg = await self.message(iid, aid)

        async def shown():
            if not _status_line(self.stand_in.message(self.channel, msg["ts"])).startswith(word):
                return False
            return any(c.ok and c.args.get("ts") == msg["ts"] for c in self.stand_in.calls_to("chat.update"))

        await _until(shown, f"{aid}'s message to show {word!r}")
        self.ctx.say(f"Slack: {aid}'s message now shows: {_status_line(self.stand_in.message(self.channel, msg['ts']))}",
                     highlight=False, soft_wrap=True)

    def report(self) -> list[dict[str, Any]]:
        calls = self.stand_in.calls_to("chat.update")
        out = []
        for rec in self.interactions:
            rec = dict(rec)
            before = rec.pop("updates_before", 0)
            after = [_status_line({"blocks": c.args.get("blocks")}) for c in calls[before:]
                     if c.ok and c.args.get("ts") == rec["message_ts"]]
            rec["chat_updates"] = after  # what the stand-in recorded for this message since the click
            rec["shown"] = _status_line(self.stand_in.message(self.channel, rec["message_ts"]))
            out.append(rec)
        return out


@asynccontextmanager
async def slack_ic(ctx: Any) -> AsyncIterator[SlackIC]:
    """The CodeBlue API in this process, on a free loopback port, and the IC's Slack hands."""
    import uvicorn

    from starters.api.app import ApiSettings, create_app
    from starters.api.auth import TokenBook, sha256_hex
    from worker.temporal import connect

    cfg = ctx.sandbox.config
    secret = os.environ.get(cfg.slack.signing_secret_env)
    if not secret:
        raise CodeBlueError(f"drill --via slack: ${cfg.slack.signing_secret_env} is unset")
    if not cfg.slack.channel:
        raise CodeBlueError("drill --via slack: the sandbox has no slack.channel")
    from sandbox.drills.kit import IC

    # the IC as a commander in the API's token book (the token itself is never used: Slack's
    # signature and slack.users say who clicked), and the sandbox Slack user mapped to the IC
    api = ApiConfig(tokens=[ApiToken(name=IC, sha256=sha256_hex(secrets.token_urlsafe(24)), roles=["commander"])])
    api_cfg = cfg.model_copy(update={"api": api, "slack": cfg.slack.model_copy(update={"users": {SLACK_IC_USER: IC}})})
    settings = TemporalSettings(address=ctx.client.service_client.config.target_host,
                                namespace=ctx.client.namespace, task_queue=ctx.task_queue)
    clients: list[Any] = []

    async def temporal():  # signs only for a principal the API authenticated (via=None)
        c = await connect(settings, via=None)
        clients.append(c)
        return c

    app = create_app(temporal, ApiSettings(config=api_cfg, temporal=settings, tokens=TokenBook.from_config(api, env={})))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           server_header=False, access_log=False))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        if task.done() or not server.started:
            raise CodeBlueError("drill --via slack: could not serve the CodeBlue API")
        url = f"http://127.0.0.1:{port}"
        ctx.say(f"CodeBlue API at {url}; Slack user {SLACK_IC_USER} is {IC} (commander); clicks go to "
                f"{url}/slack/interactions", highlight=False, soft_wrap=True)
        async with httpx.AsyncClient(base_url=url, timeout=30, verify=tls_context()) as http:
            yield SlackIC(ctx, http, secret)
    finally:
        server.should_exit = True
        await task
        sock.close()
