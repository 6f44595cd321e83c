"""A local stand-in for Slack's Web API: the few methods CodeBlue calls, as slack_sdk sends them.

    async with SlackApi(token="xoxb-test") as slack:          # standalone, its own port
        cfg = SlackConfig(api_url=slack.api_url, channel=slack.channel)
        ...
        slack.messages[slack.channel]     # [{"ts", "text", "blocks", "metadata", ...}], oldest first
        slack.ephemerals, slack.views     # what chat.postEphemeral / views.open were asked

Or mounted in the sandbox receiver (`Receiver(slack_token=...)`, `rx.slack_api`). Methods:
`chat.postMessage`, `chat.update`, `chat.postEphemeral`, `views.open`, `conversations.history`,
`auth.test` (JSON, form or query bodies), and the incident channel's: `conversations.create`
(Slack's name rules: lowercase letters, digits, '-' and '_', at most 80, else
`invalid_name_specials` / `invalid_name_maxlength` / `invalid_name_punctuation` /
`invalid_name_required`; `name_taken` for any existing name, archived ones too),
`conversations.list` (types, exclude_archived, limit, cursor; private channels only where the
bot is a member), `conversations.info`, `conversations.invite` (`no_user`, `user_not_found`,
`cant_invite_self`, `already_in_channel`, `not_in_channel`, `is_archived`; with several users
and no `force`, nobody is added when one fails), `conversations.setTopic` (`too_long` past 250)
and `bookmarks.add` / `bookmarks.list` (type `link` only, `invalid_link` unless http(s)).

    slack.channels          # channel ID -> Slack's conversation object (+ "members"), oldest first
    slack.channel_named("inc-inc-1"), slack.bookmarks[channel_id]

Users: any well-formed user ID (U.../W...) exists unless `users=` names the workspace's. The
bearer token is checked (`invalid_auth` for a wrong one, `not_authed` for none); answers have
Slack's `{"ok": ...}` shapes; unknown channels are `channel_not_found`. `fail_next(method, error)` injects failures (`ratelimited` answers 429
with Retry-After: 1, `internal_error` 500); `rate_limit_next(method, times, retry_after)` answers
the next `times` calls of `method` with 429 `ratelimited` and that Retry-After (seconds). Each
recorded call (`calls`) has its arrival time (`at`, time.monotonic()).
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
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
WORKSPACE_ADMIN = "U0ADMIN"  # who created the channels a stand-in starts with
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_CHANNEL_NAME = re.compile(r"[a-z0-9_-]+")
_TOPIC_MAX, _NAME_MAX, _LIST_MAX = 250, 80, 1000


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    ok: bool = False
    error: str | None = None
    at: float = field(default_factory=time.monotonic)  # when the stand-in received it


class SlackApi:
    def __init__(self, token: str = SANDBOX_BOT_TOKEN, channels: tuple[str, ...] = (SANDBOX_CHANNEL,), *,
                 host: str = "127.0.0.1", port: int = 0, users: tuple[str, ...] | None = None) -> None:
        self.token = token
        self.channel = channels[0] if channels else SANDBOX_CHANNEL
        self._initial = channels
        self.users = set(users) if users is not None else None  # None: every well-formed ID exists
        self.messages: dict[str, list[dict[str, Any]]] = {c: [] for c in channels}
        self.channels: dict[str, dict[str, Any]] = {}
        self.bookmarks: dict[str, list[dict[str, Any]]] = {}
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
        for c in channels:  # the workspace's own channels: the bot is in them, it created none
            self.add_channel(c.lower(), creator=WORKSPACE_ADMIN, channel_id=c, bot_member=True)

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

    def fail_next(self, method: str, error: str = "internal_error", times: int = 1, after: int = 0) -> None:
        """The next `times` calls of `method` fail with `error`, once `after` more have gone through."""
        self._failures.setdefault(method, []).extend([("", "")] * after + [(error, "1")] * times)

    def rate_limit_next(self, method: str, times: int = 1, retry_after: int | str = 1) -> None:
        """The next `times` calls of `method` answer HTTP 429 `ratelimited`, `Retry-After: retry_after`
        (as Slack does: https://api.slack.com/apis/rate-limits), before the token is even read."""
        self._failures.setdefault(method, []).extend([("ratelimited", str(retry_after))] * times)

    def add_channel(self, name: str, *, creator: str = WORKSPACE_ADMIN, is_private: bool = False,
                    channel_id: str | None = None, bot_member: bool = False, archived: bool = False,
                    members: tuple[str, ...] = ()) -> dict[str, Any]:
        """A channel that exists in the workspace (someone else's, by default): no name check."""
        cid = channel_id or f"C{next(self._seq):08d}"
        ch = {"id": cid, "name": name, "name_normalized": name, "is_channel": True, "is_group": False,
              "is_im": False, "is_mpim": False, "is_private": is_private, "created": int(time.time()),
              "creator": creator, "is_archived": archived, "is_general": False,
              "topic": {"value": "", "creator": "", "last_set": 0},
              "purpose": {"value": "", "creator": "", "last_set": 0},
              "members": [*members, *([BOT_USER] if bot_member else [])]}
        self.channels[cid] = ch
        self.messages.setdefault(cid, [])
        self.bookmarks.setdefault(cid, [])
        return ch

    def channel_named(self, name: str) -> dict[str, Any] | None:
        return next((c for c in self.channels.values() if c["name"] == name), None)

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    def reset(self) -> None:
        for cid in [c for c in self.channels if c not in self._initial]:
            del self.channels[cid]
            self.messages.pop(cid, None)
            self.bookmarks.pop(cid, None)
        for msgs in self.messages.values():
            msgs.clear()
        for marks in self.bookmarks.values():
            marks.clear()
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
        if pending and not pending[0][0]:  # a call let through before the failures
            pending.pop(0)
        elif pending:
            call.error, after = pending.pop(0)
            if call.error == "ratelimited":
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": after})
            status = 500 if call.error in ("internal_error", "fatal_error") else 200
            return web.json_response({"ok": False, "error": call.error}, status=status)
        error = self._authed(request, args)
        if error is None:
            # Slack's methods all have a dot: "/api/channel" never reaches a helper of this class
            handler = getattr(self, "_" + method.replace(".", "_"), None) if "." in method else None
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


    # -- the incident channel -------------------------------------------------------------------

    def _conversation(self, args: dict[str, Any], key: str = "channel") -> dict[str, Any] | None:
        return self.channels.get(str(args.get(key) or ""))

    def _conversations_create(self, args: dict[str, Any]) -> dict[str, Any] | str:
        name = args.get("name")
        if name is None:
            return "invalid_name_required"
        name = str(name)
        if not name:
            return "no_channel"
        if len(name) > _NAME_MAX:
            return "invalid_name_maxlength"
        if not _CHANNEL_NAME.fullmatch(name):
            return "invalid_name_specials"
        if not re.search(r"[a-z0-9]", name):
            return "invalid_name_punctuation"
        if self.channel_named(name) is not None:
            return "name_taken"  # archived channels keep their names too
        ch = self.add_channel(name, creator=BOT_USER, is_private=_flag(args.get("is_private")), bot_member=True)
        return {"channel": _conversation(ch)}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._conversation(args)
        if ch is None or (ch["is_private"] and BOT_USER not in ch["members"]):
            return "channel_not_found"
        return {"channel": _conversation(ch)}

    def _conversations_list(self, args: dict[str, Any]) -> dict[str, Any] | str:
        types = {t.strip() for t in str(args.get("types") or "public_channel").split(",") if t.strip()}
        if not types <= {"public_channel", "private_channel", "mpim", "im"}:
            return "invalid_types"
        try:
            limit = int(args.get("limit") or 100)
        except ValueError:
            return "invalid_limit"
        limit = max(1, min(limit, _LIST_MAX))
        cursor = str(args.get("cursor") or "")
        if cursor and not cursor.startswith("next:"):
            return "invalid_cursor"
        try:
            start = int(cursor[5:]) if cursor else 0
        except ValueError:
            return "invalid_cursor"
        skip_archived = _flag(args.get("exclude_archived"))
        seen = [c for c in self.channels.values()
                if ("private_channel" if c["is_private"] else "public_channel") in types
                and (not c["is_private"] or BOT_USER in c["members"])
                and not (skip_archived and c["is_archived"])]
        page = seen[start:start + limit]
        more = start + limit < len(seen)
        return {"channels": [_conversation(c) for c in page],
                "response_metadata": {"next_cursor": f"next:{start + limit}" if more else ""}}

    def _joined(self, args: dict[str, Any]) -> dict[str, Any] | str:
        """The channel a method acts in, or Slack's error: one the bot cannot see, archived, or
        not joined."""
        ch = self._conversation(args)
        if ch is None or (ch["is_private"] and BOT_USER not in ch["members"]):
            return "channel_not_found"
        if ch["is_archived"]:
            return "is_archived"
        if BOT_USER not in ch["members"]:
            return "not_in_channel"
        return ch

    def _conversations_invite(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._joined(args)
        if isinstance(ch, str):
            return ch
        users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
        if not users:
            return "no_user"
        if len(users) > 1000:
            return "too_many_users"
        errors: list[dict[str, str]] = []
        for u in users:
            error = None
            if u == BOT_USER:
                error = "cant_invite_self"
            elif not _USER_ID.fullmatch(u) or (self.users is not None and u not in self.users):
                error = "user_not_found"
            elif u in ch["members"]:
                error = "already_in_channel"
            if error:
                errors.append({"user": u, "error": error})
        if errors and not _flag(args.get("force")):
            return errors[0]["error"]  # Slack names the first; nobody was added
        bad = {e["user"] for e in errors}
        ch["members"].extend(u for u in users if u not in bad and u not in ch["members"])
        listed = [{"user": e["user"], "ok": False, "error": e["error"]} for e in errors]
        return {"channel": _conversation(ch), **({"errors": listed} if errors else {})}

    def _conversations_setTopic(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._joined(args)
        if isinstance(ch, str):
            return ch
        if "topic" not in args:
            return "invalid_arguments"
        topic = str(args["topic"])
        if len(topic) > _TOPIC_MAX:
            return "too_long"
        ch["topic"] = {"value": topic, "creator": BOT_USER, "last_set": int(time.time())}
        return {"channel": _conversation(ch)}

    def _bookmarks_add(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._conversation(args, "channel_id")
        if ch is None or (ch["is_private"] and BOT_USER not in ch["members"]):
            return "channel_not_found"
        if not args.get("title") or not args.get("type"):
            return "invalid_arguments"
        if args["type"] != "link":
            return "invalid_bookmark_type"
        link = str(args.get("link") or "")
        if not link.startswith(("http://", "https://")):
            return "invalid_link"
        marks = self.bookmarks.setdefault(ch["id"], [])
        if len(marks) >= 100:
            return "too_many_bookmarks"
        mark = {"id": f"Bk{next(self._seq):08d}", "channel_id": ch["id"], "title": str(args["title"]),
                "link": link, "emoji": args.get("emoji"), "type": "link", "date_created": int(time.time()),
                "last_updated_by_user_id": BOT_USER}
        marks.append(mark)
        return {"bookmark": mark}

    def _bookmarks_list(self, args: dict[str, Any]) -> dict[str, Any] | str:
        ch = self._conversation(args, "channel_id")
        if ch is None or (ch["is_private"] and BOT_USER not in ch["members"]):
            return "channel_not_found"
        return {"bookmarks": list(self.bookmarks.get(ch["id"], []))}


def _flag(value: Any) -> bool:
    """A boolean argument as slack_sdk (1/0), JSON (true/false) or a form ("true") sends it."""
    return value is True or str(value).strip().lower() in ("1", "true")


def _conversation(ch: dict[str, Any]) -> dict[str, Any]:
    """A conversation object as Slack answers it (its member list is conversations.members')."""
    out = {k: v for k, v in ch.items() if k != "members"}
    out["is_member"] = BOT_USER in ch["members"]
    out["num_members"] = len(ch["members"])
    return out


def _public(msg: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    out = {k: v for k, v in msg.items() if k != "metadata"}
    if with_metadata and "metadata" in msg:
        out["metadata"] = msg["metadata"]
    return out
