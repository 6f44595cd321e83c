"""A local stand-in for Slack's Web API: the few methods CodeBlue calls, as slack_sdk sends them.

    async with SlackApi(token="xoxb-test") as slack:          # standalone, its own port
        cfg = SlackConfig(api_url=slack.api_url, channel=slack.channel)
        ...
        slack.messages[slack.channel]     # [{"ts", "text", "blocks", "metadata", ...}], oldest first
        slack.ephemerals, slack.views     # what chat.postEphemeral / views.open were asked

Or mounted in the sandbox receiver (`Receiver(slack_token=...)`, `rx.slack_api`). Methods:
`chat.postMessage`, `chat.update`, `chat.postEphemeral`, `views.open`, `conversations.history`,
`auth.test` (JSON, form or query bodies). The bearer token is checked (`invalid_auth` for a
wrong one, `not_authed` for none); answers have Slack's `{"ok": ...}` shapes; unknown channels
are `channel_not_found`. `fail_next(method, error)` injects failures (`ratelimited` answers 429
with Retry-After: 1, `internal_error` 500); `rate_limit_next(method, times, retry_after)` answers
the next `times` calls of `method` with 429 `ratelimited` and that Retry-After (seconds). Each
recorded call (`calls`) has its arrival time (`at`, time.monotonic()).
"""

from __future__ import annotations

import hmac
import itertools
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

SANDBOX_BOT_TOKEN = "xoxb-codeblue-sandbox"
SANDBOX_SIGNING_SECRET = "codeblue-sandbox-signing-secret"
SANDBOX_CHANNEL = "C0CODEBLUE"
BOT_USER, BOT_ID, TEAM = "U0CODEBLUE", "B0CODEBLUE", "T0SANDBOX"
_JSON_FIELDS = ("blocks", "metadata", "view", "attachments")


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    ok: bool = False
    error: str | None = None
    at: float = field(default_factory=time.monotonic)  # when the stand-in received it


class SlackApi:
    def __init__(self, token: str = SANDBOX_BOT_TOKEN, channels: tuple[str, ...] = (SANDBOX_CHANNEL,), *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.channel = channels[0] if channels else SANDBOX_CHANNEL
        self.messages: dict[str, list[dict[str, Any]]] = {c: [] for c in channels}
        self.ephemerals: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []
        self.calls: list[ApiCall] = []
        self._failures: dict[str, list[tuple[str, str]]] = {}  # method -> [(error, Retry-After)]
        self._seq = itertools.count(1)
        self.host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._base = ""  # the URL this stand-in is served under (standalone or mounted)
        self._prefix = ""

    # -- lifecycle (standalone) ---------------------------------------------------------------

    async def start(self) -> SlackApi:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._sock = sock
        await web.SockSite(self._runner, sock).start()
        self._base = f"http://{self.host}:{sock.getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> SlackApi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        """Serve `<prefix>/api/<method>` on `app` (register it before any catch-all route)."""
        app.router.add_route("*", prefix + "/api/{method}", self._handle)
        self._prefix = prefix

    def mounted_at(self, base_url: str) -> None:
        """Where the app that serves these routes listens (the receiver, once started)."""
        self._base = base_url

    @property
    def api_url(self) -> str:
        """slack_sdk's base_url for this stand-in (ends in /api/)."""
        if not self._base:
            raise RuntimeError("slack stand-in is not running")
        return f"{self._base}{self._prefix}/api/"

    # -- test helpers --------------------------------------------------------------------------

    def fail_next(self, method: str, error: str = "internal_error", times: int = 1) -> None:
        self._failures.setdefault(method, []).extend([(error, "1")] * times)

    def rate_limit_next(self, method: str, times: int = 1, retry_after: int | str = 1) -> None:
        """The next `times` calls of `method` answer HTTP 429 `ratelimited`, `Retry-After: retry_after`
        (as Slack does: https://api.slack.com/apis/rate-limits), before the token is even read."""
        self._failures.setdefault(method, []).extend([("ratelimited", str(retry_after))] * times)

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    def reset(self) -> None:
        for msgs in self.messages.values():
            msgs.clear()
        self.ephemerals.clear()
        self.views.clear()
        self.calls.clear()
        self._failures.clear()

    # -- requests ------------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        ctype = request.content_type
        if raw and ctype == "application/json":
            body = json.loads(raw)
            if isinstance(body, dict):
                args.update(body)
        elif raw:
            args.update(dict(parse_qsl(raw.decode(), keep_blank_values=True)))
        for k in _JSON_FIELDS:  # a form body carries these as JSON strings
            if isinstance(args.get(k), str) and args[k]:
                try:
                    args[k] = json.loads(args[k])
                except ValueError:
                    pass
        return args

    def _authed(self, request: web.Request, args: dict[str, Any]) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        presented = presented.strip() if scheme.lower() == "bearer" else str(args.pop("token", "") or "")
        if not presented:
            return "not_authed"
        if not hmac.compare_digest(presented.encode(), self.token.encode()):
            return "invalid_auth"
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            args = await self._args(request)
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_json"})
        call = ApiCall(method=method, args={k: v for k, v in args.items() if k != "token"})
        self.calls.append(call)
        pending = self._failures.get(method)
        if pending:
            call.error, after = pending.pop(0)
            if call.error == "ratelimited":
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": after})
            status = 500 if call.error in ("internal_error", "fatal_error") else 200
            return web.json_response({"ok": False, "error": call.error}, status=status)
        error = self._authed(request, args)
        if error is None:
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            if handler is None:
                error = "unknown_method"
            else:
                result = handler(args)
                if isinstance(result, str):
                    error = result
                else:
                    call.ok = True
                    return web.json_response({"ok": True, **result})
        call.error = error
        return web.json_response({"ok": False, "error": error})

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._seq):06d}"

    def _channel(self, args: dict[str, Any]) -> str | None:
        ch = str(args.get("channel") or "")
        return ch if ch in self.messages else None

    # -- methods: each returns the answer's fields, or an error code ---------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://codeblue-sandbox.slack.com/", "team": "CodeBlue sandbox", "user": "codeblue",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._channel(args)
        if ch is None:
            return "channel_not_found"
        if not args.get("text") and not args.get("blocks"):
            return "no_text"
        msg = {"type": "message", "ts": self._ts(), "user": BOT_USER, "bot_id": BOT_ID,
               "text": args.get("text", ""), "blocks": args.get("blocks") or []}
        if args.get("metadata"):
            msg["metadata"] = args["metadata"]
        self.messages[ch].append(msg)
        return {"channel": ch, "ts": msg["ts"], "message": _public(msg, with_metadata=False)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._channel(args)
        if ch is None:
            return "channel_not_found"
        msg = self.message(ch, str(args.get("ts") or ""))
        if msg is None:
            return "message_not_found"
        if "text" in args:
            msg["text"] = args["text"]
        if "blocks" in args:
            msg["blocks"] = args["blocks"] or []
        if args.get("metadata"):
            msg["metadata"] = args["metadata"]
        msg["edited"] = {"user": BOT_USER, "ts": self._ts()}
        return {"channel": ch, "ts": msg["ts"], "text": msg["text"], "message": _public(msg, with_metadata=False)}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._channel(args)
        if ch is None:
            return "channel_not_found"
        if not args.get("user"):
            return "user_not_in_channel"
        if not args.get("text") and not args.get("blocks"):
            return "no_text"
        ts = self._ts()
        self.ephemerals.append({"channel": ch, "user": args["user"], "text": args.get("text", ""),
                                "blocks": args.get("blocks") or [], "ts": ts})
        return {"message_ts": ts}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any] | str:
        view = args.get("view")
        if not args.get("trigger_id"):
            return "invalid_trigger_id"
        if not isinstance(view, dict) or view.get("type") != "modal":
            return "invalid_arguments"
        opened = {"id": f"V{next(self._seq):08d}", "team_id": TEAM, **view,
                  "state": {"values": {}}, "hash": f"{time.time():.6f}"}
        self.views.append({"trigger_id": args["trigger_id"], "view": opened})
        return {"view": opened}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._channel(args)
        if ch is None:
            return "channel_not_found"
        try:
            limit = max(1, min(int(args.get("limit") or 100), 999))
        except ValueError:
            return "invalid_limit"
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        latest, oldest = args.get("latest"), args.get("oldest")
        meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        msgs = list(reversed(self.messages[ch]))  # newest first, as Slack answers
        if latest:
            msgs = [m for m in msgs if float(m["ts"]) < float(latest) or (inclusive and m["ts"] == latest)]
        if oldest:
            msgs = [m for m in msgs if float(m["ts"]) > float(oldest) or (inclusive and m["ts"] == oldest)]
        return {"messages": [_public(m, with_metadata=meta) for m in msgs[:limit]],
                "has_more": len(msgs) > limit, "pin_count": 0}


def _public(msg: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    out = {k: v for k, v in msg.items() if k != "metadata"}
    if with_metadata and "metadata" in msg:
        out["metadata"] = msg["metadata"]
    return out
