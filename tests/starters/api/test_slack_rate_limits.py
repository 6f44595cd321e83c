"""Slack's rate limits and redraws (issue #27), through the real interfaces: slack_sdk against
the Web API stand-in (sandbox.slack_api) answering 429 `ratelimited` with Retry-After, the API's
`POST /slack/interactions` with Slack's v0 signatures, and real incident workflows on the dev
server (fake world) that hold the proposals.

- the API's client waits out a 429 with slack_sdk's own rate-limit handler, bounded: after the
  click's ack (chat.update, chat.postEphemeral) and within views.open's 3 s trigger;
- the activities' client waits out a 429 on chat.update (idempotent) and never re-sends
  chat.postMessage: that 429 becomes Temporal's retry after Retry-After;
- each drawing of a proposal message that differs carries new block_ids, and a click on a
  redrawn message is still understood.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from types import SimpleNamespace
from typing import cast
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.slack import SlackActivities
from activities.slack_retry import BoundedRateLimitRetry, api_method
from domain.config import CodeBlueConfig, SlackConfig
from domain.slack import (
    ACTIONS_BLOCK,
    APPROVE,
    PROPOSAL_BLOCK,
    REASON_BLOCK,
    REASON_INPUT,
    REJECT,
    STATUS_BLOCK,
    SlackProposalRequest,
    SlackUpdateRequest,
    button_value,
    find_block,
    is_block,
    proposal_blocks,
    reason_value,
)
from sandbox.slack_api import SlackApi
from starters.api.slack import click_retry_handlers
from tests.support.activity import attempt, post_proposal
from tests.support.api import api_config, api_on

# small bits as in tests/test_slack.py (copied: a test file never imports another)
BOT = "xoxb-test-" + "t" * 20
SECRET = "test-signing-secret-" + "s" * 12
CHANNEL = "C0INCIDENT"
USERS = {"UALICE": "alice", "UBOB": "bob"}
TRIGGER_LIFE = 3.0  # s: Slack's trigger_id expires this long after the click


def proposal(iid: str = "INC-1", aid: str = "rollback", **kw) -> SlackProposalRequest:
    base = dict(incident_id=iid, action_id=aid, kind="helm_rollback", reason="release 12 is crash-looping",
                severity="P0", commander="alice", idempotency_key=f"{iid}:{aid}:proposal")
    return SlackProposalRequest(**{**base, **kw})


def slack_cfg(api: SlackApi) -> SlackConfig:
    return SlackConfig(api_url=api.api_url, channel=CHANNEL, users=USERS)


def ids(blocks: list[dict]) -> dict[str, str]:
    """block_id by its prefix: {PROPOSAL_BLOCK: 'codeblue_proposal.<rev>', ...}."""
    out = {}
    for prefix in (PROPOSAL_BLOCK, STATUS_BLOCK, ACTIONS_BLOCK):
        b = find_block(blocks, prefix)
        if b is not None:
            out[prefix] = b["block_id"]
    return out


def status_line(blocks: list[dict]) -> str:
    status = find_block(blocks, STATUS_BLOCK)
    assert status is not None, blocks
    return status["elements"][0]["text"]


@pytest.fixture
async def slack():
    async with SlackApi(token=BOT, channels=(CHANNEL,)) as api:
        yield api


# ------------------------------------------------------------------ slack_sdk's handler, bounded

def _req(method: str) -> HttpRequest:
    return HttpRequest(method="POST", url=f"https://slack.com/api/{method}", headers={})


def _resp(status: int, **headers: str) -> HttpResponse:
    return HttpResponse(status_code=status, headers=dict(headers), body={"ok": False, "error": "ratelimited"})


async def test_the_rate_limit_handler_retries_only_its_methods_within_its_bound():
    h = BoundedRateLimitRetry(("chat.update",), max_retry_count=2, max_wait_seconds=5)
    assert h.worst_wait_seconds == 12
    assert api_method("http://127.0.0.1:9/slack-api/api/chat.update?x=1") == "chat.update"

    async def can(method: str, resp: HttpResponse | None, attempt: int = 0) -> bool:
        return await h.can_retry_async(state=RetryState(current_attempt=attempt), request=_req(method), response=resp)

    assert await can("chat.update", _resp(429, **{"Retry-After": "5"}))
    assert await can("chat.update", _resp(429, **{"retry-after": "0"}))
    assert await can("chat.update", _resp(429))  # no Retry-After: slack_sdk waits 1-2 s
    assert not await can("chat.update", _resp(429, **{"Retry-After": "6"}))  # past the bound: surfaces
    assert not await can("chat.update", _resp(429, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert not await can("chat.update", _resp(429, **{"Retry-After": "1"}), attempt=2)  # max_retry_count
    assert not await can("chat.update", _resp(500))
    assert not await can("chat.update", None)  # a connection error is not this handler's
    assert not await can("chat.postMessage", _resp(429, **{"Retry-After": "1"}))  # never re-posts

    # the API's client: slack_sdk's connection-error retry kept, then the bounded 429 handlers
    handlers = click_retry_handlers()
    assert isinstance(handlers[0], AsyncConnectionErrorRetryHandler)
    bounded = {m: h for h in handlers if isinstance(h, BoundedRateLimitRetry) for m in h.methods}
    assert set(bounded) == {"chat.update", "chat.postEphemeral", "conversations.history", "views.open"}
    assert bounded["views.open"].worst_wait_seconds <= 2 < TRIGGER_LIFE  # the trigger outlives the wait
    assert "chat.postMessage" not in bounded


async def test_the_api_client_on_the_stand_in(slack):
    """The API's client as it is built (click_retry_handlers), against the stand-in's 429s."""
    web = AsyncWebClient(token=BOT, base_url=slack.api_url, retry_handlers=click_retry_handlers())
    posted = await web.chat_postMessage(channel=CHANNEL, text="x", blocks=proposal_blocks(proposal()))

    # 429 twice, Retry-After: 1 -> waited out twice, answered by the third call
    slack.rate_limit_next("chat.update", times=2)
    t0 = time.monotonic()
    r = await web.chat_update(channel=CHANNEL, ts=posted["ts"], text="y", blocks=proposal_blocks(proposal(), "approved", "alice"))
    assert r["ok"] and time.monotonic() - t0 >= 2
    calls = slack.calls_to("chat.update")
    assert [c.error for c in calls] == ["ratelimited", "ratelimited", None] and calls[-1].ok
    assert all(later.at - earlier.at >= 1 for earlier, later in zip(calls, calls[1:], strict=False))
    # three times is once too many (max_retry_count=2): the third 429 reaches the caller
    slack.calls.clear()
    slack.rate_limit_next("chat.update", times=3)
    with pytest.raises(SlackApiError) as e:
        await web.chat_update(channel=CHANNEL, ts=posted["ts"], text="z")
    assert e.value.response.status_code == 429 and e.value.response["error"] == "ratelimited"
    assert len(slack.calls_to("chat.update")) == 3
    # a Retry-After past the bound is not slept on: the caller hears at once
    slack.calls.clear()
    slack.rate_limit_next("chat.postEphemeral", retry_after=30)
    t0 = time.monotonic()
    with pytest.raises(SlackApiError):
        await web.chat_postEphemeral(channel=CHANNEL, user="UALICE", text="no")
    assert time.monotonic() - t0 < 5 and len(slack.calls_to("chat.postEphemeral")) == 1
    # views.open: Retry-After 1 once is waited (inside the trigger's 3 s), 2 s is not
    slack.rate_limit_next("views.open")
    view = {"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": []}
    t0 = time.monotonic()
    assert (await web.views_open(trigger_id="t1", view=view))["ok"]
    assert time.monotonic() - t0 < TRIGGER_LIFE and len(slack.calls_to("views.open")) == 2
    slack.rate_limit_next("views.open", retry_after=2)
    with pytest.raises(SlackApiError):
        await web.views_open(trigger_id="t2", view=view)
    assert len(slack.calls_to("views.open")) == 3


# ------------------------------------------------------------------ the activities' client

async def test_an_activity_waits_out_a_429_on_chat_update_but_never_reposts(slack):
    acts = SlackActivities(slack_cfg(slack), BOT)
    # chat.postMessage: one call only; Temporal retries after Retry-After (never slack_sdk: a post
    # must not be doubled)
    slack.rate_limit_next("chat.postMessage")
    with pytest.raises(ApplicationError) as e:
        await post_proposal(acts, proposal())
    assert not e.value.non_retryable and e.value.type == "NotificationUnavailable"
    assert e.value.next_retry_delay is not None and e.value.next_retry_delay.total_seconds() == 1
    assert len(slack.calls_to("chat.postMessage")) == 1 and slack.messages[CHANNEL] == []
    posted = await post_proposal(acts, proposal(), 2)
    assert posted.delivered and posted.ref is not None and len(slack.messages[CHANNEL]) == 1

    # chat.update is idempotent: slack_sdk waits Retry-After and sends it again, in one attempt
    slack.rate_limit_next("chat.update")
    upd = await attempt(1).run(acts.slack_update_proposal, SlackUpdateRequest(
        proposal=proposal(), ref=posted.ref, state="approved", by="alice"))
    assert upd.delivered
    first, second = slack.calls_to("chat.update")
    assert (first.error, second.ok) == ("ratelimited", True) and second.at - first.at >= 1
    assert "Approved by alice" in slack.message(CHANNEL, posted.ref.ts)["text"]
    # longer than the activity waits in the call: Temporal's retry, after Retry-After
    slack.rate_limit_next("chat.update", retry_after=30)
    with pytest.raises(ApplicationError) as e:
        await attempt(1).run(acts.slack_update_proposal, SlackUpdateRequest(
            proposal=proposal(), ref=posted.ref, state="executed", detail="rolled back"))
    assert not e.value.non_retryable and e.value.next_retry_delay is not None
    assert e.value.next_retry_delay.total_seconds() == 30 and len(slack.calls_to("chat.update")) == 3


# ------------------------------------------------------------------ block_ids per drawing

def test_each_drawing_that_differs_has_its_own_block_ids():
    p = proposal()
    drawings = [proposal_blocks(p), proposal_blocks(p, "proposed", "alice", "approved 1/2; needs a second person"),
                proposal_blocks(p, "approved", "alice"), proposal_blocks(p, "executed", None, "rolled back 12 -> 11"),
                proposal_blocks(p.model_copy(update={"severity": "P1"}))]  # an escalation redraws the section
    seen: set[str] = set()
    for blocks in drawings:
        drawn = ids(blocks)
        assert set(drawn) >= {PROPOSAL_BLOCK, STATUS_BLOCK} and all(is_block(v, k) for k, v in drawn.items())
        assert len({v.rsplit(".", 1)[1] for v in drawn.values()}) == 1  # one revision per drawing
        assert not seen & set(drawn.values()), drawn  # never an id an earlier drawing had
        seen |= set(drawn.values())
        assert all(len(v) <= 255 for v in drawn.values())  # Slack's limit on a block_id
    # the same drawing, the same ids: a retried chat.update (or the API and the worker drawing
    # the same state) changes nothing; and no clock or randomness in it (workflow-safe)
    assert proposal_blocks(p, "approved", "alice") == proposal_blocks(p, "approved", "alice")
    assert not is_block("codeblue_statusx.1", STATUS_BLOCK) and is_block(STATUS_BLOCK, STATUS_BLOCK)

    # the reject modal's reason, found by its block_id's prefix (as Slack keys the state)
    for key in (REASON_BLOCK, f"{REASON_BLOCK}.0123456789"):
        view = {"state": {"values": {key: {REASON_INPUT: {"type": "plain_text_input", "value": " too risky "}}}}}
        assert reason_value(view) == ("too risky", key)
    assert reason_value({"blocks": [{"type": "input", "block_id": REASON_BLOCK}]}) == ("", REASON_BLOCK)


async def test_two_updates_of_one_message_carry_different_block_ids(slack):
    acts = SlackActivities(slack_cfg(slack), BOT)
    posted = await post_proposal(acts, proposal())
    assert posted.ref is not None
    for state, by, detail in [("proposed", "alice", "approved 1/2; needs a second person"), ("approved", "bob", None)]:
        await attempt(1).run(acts.slack_update_proposal, SlackUpdateRequest(
            proposal=proposal(), ref=posted.ref, state=state, by=by, detail=detail))
    drawn = [ids(c.args["blocks"]) for c in slack.calls_to("chat.postMessage") + slack.calls_to("chat.update")]
    assert len(drawn) == 3
    for prefix in (PROPOSAL_BLOCK, STATUS_BLOCK):  # the blocks every drawing has
        assert len({d[prefix] for d in drawn}) == 3, (prefix, drawn)
    assert drawn[0][ACTIONS_BLOCK] != drawn[1][ACTIONS_BLOCK] and ACTIONS_BLOCK not in drawn[2]
    assert ids(slack.message(CHANNEL, posted.ref.ts)["blocks"]) == drawn[2]


# ------------------------------------------------------------------ the click path, end to end

def signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature}


async def interact(http: httpx.AsyncClient, payload: dict) -> httpx.Response:
    body = urlencode({"payload": json.dumps(payload)})
    return await http.post("/slack/interactions", content=body, headers=signed(body))


def click(user: str, button: str, msg: dict) -> dict:
    """Slack's block_actions for a click on `button` of the message as it is drawn now: the
    action carries the block_id of the actions block it was drawn in."""
    actions = find_block(msg["blocks"], ACTIONS_BLOCK)
    assert actions is not None, msg["blocks"]
    el = next(e for e in actions["elements"] if e["action_id"] == button)
    return {
        "type": "block_actions", "user": {"id": user, "team_id": "T0SANDBOX"}, "api_app_id": "A0CODEBLUE",
        "team": {"id": "T0SANDBOX"}, "trigger_id": f"trig-{uuid.uuid4().hex[:8]}",
        "container": {"type": "message", "message_ts": msg["ts"], "channel_id": CHANNEL, "is_ephemeral": False},
        "channel": {"id": CHANNEL}, "message": {k: v for k, v in msg.items() if k != "metadata"},
        "actions": [{"type": "button", "action_id": button, "block_id": actions["block_id"],
                     "value": el["value"], "action_ts": f"{time.time():.6f}"}],
    }


async def until(pred, what: str, timeout: float = 20):
    end = asyncio.get_running_loop().time() + timeout
    while not (res := await pred()):
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return res


async def action(http: httpx.AsyncClient, iid: str, aid: str) -> dict:
    r = await http.get(f"/incidents/{iid}", headers={"Authorization": "Bearer " + "tok-viewer-" + "v" * 24})
    assert r.status_code == 200, r.text
    return next(a for a in r.json()["actions"] if a["id"] == aid)


async def _ok_update(slack: SlackApi, ts: str, after: int):
    return next((c for c in slack.calls_to("chat.update")[after:] if c.ok and c.args.get("ts") == ts), None)


VIEWER = {"Authorization": "Bearer " + "tok-viewer-" + "v" * 24}  # tests.api_fixtures.PEOPLE's vic
RESPONDER = {"Authorization": "Bearer " + "tok-responder-" + "b" * 24}  # ... and bob


async def test_clicks_get_through_429s_and_a_redrawn_message_is_understood(dev_env, slack, monkeypatch):
    """In process (httpx's ASGITransport runs the app's after-the-ack work before it returns the
    response: the ack's timing is the next test's)."""
    monkeypatch.setenv("CODEBLUE_SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("CODEBLUE_SLACK_BOT_TOKEN", BOT)
    cfg: CodeBlueConfig = api_config().model_copy(update={"slack": slack_cfg(slack)})
    async with api_on(dev_env.client, cfg) as (http, world, _):
        iid = f"INC-RL-{uuid.uuid4().hex[:6]}"
        r = await http.post("/incidents", headers=RESPONDER,
                            json={"title": "gateway down", "severity": "P0", "commander": "alice", "incident_id": iid})
        assert r.status_code == 201, r.text
        world.handles.append(iid)

        async def report():
            rep = (await http.get(f"/incidents/{iid}", headers=VIEWER)).json()
            return rep if len(rep.get("actions") or []) >= 2 else None

        rep = await until(report, "proposals")
        acts = SlackActivities(slack_cfg(slack), BOT)
        reqs, refs = {}, {}
        for a in rep["actions"]:
            reqs[a["id"]] = SlackProposalRequest(
                incident_id=iid, action_id=a["id"], kind=a["kind"], reason=a["reason"], severity=rep["severity"],
                commander=rep["commander"], idempotency_key=f"{iid}:{a['id']}:slack")
            res = await post_proposal(acts, reqs[a["id"]])
            assert res.ref is not None
            refs[a["id"]] = res.ref
        first, last = list(refs)[0], list(refs)[-1]
        slack.calls.clear()

        # Reject on `last`: views.open is rate limited once; the modal opens inside the trigger's life
        slack.rate_limit_next("views.open")
        t_click = time.monotonic()
        r = await interact(http, click("UALICE", REJECT, slack.message(CHANNEL, refs[last].ts)))
        assert r.status_code == 200 and r.content == b""
        opened = await until(lambda: _now(slack.views[-1] if slack.views else None), "views.open")
        tries = slack.calls_to("views.open")
        assert [c.error for c in tries] == ["ratelimited", None] and tries[1].at - tries[0].at >= 1
        assert tries[1].at - t_click < TRIGGER_LIFE, [c.at - t_click for c in tries]
        view = opened["view"]
        assert view["private_metadata"].startswith(f"{iid}|{last}|")
        sub = {"type": "view_submission", "user": {"id": "UALICE"}, "team": {"id": "T0SANDBOX"},
               "view": {**view, "state": {"values": {REASON_BLOCK: {REASON_INPUT: {"type": "plain_text_input",
                                                                                   "value": "the rollback is enough"}}}}}}
        r = await interact(http, sub)
        assert r.status_code == 200 and r.content == b"", r.text
        assert (await action(http, iid, last))["state"] == "rejected"
        await until(lambda: _ok_update(slack, refs[last].ts, 0), f"{last}'s redraw")

        # `first` is redrawn by the worker's activity (a first approval of two: buttons kept)
        posted_ids = ids(slack.message(CHANNEL, refs[first].ts)["blocks"])
        await attempt(1).run(acts.slack_update_proposal, SlackUpdateRequest(
            proposal=reqs[first], ref=refs[first], state="proposed", by="carol",
            detail="approved 1/2; needs a second person"))
        redrawn = slack.message(CHANNEL, refs[first].ts)
        assert redrawn is not None
        redrawn_ids = ids(redrawn["blocks"])
        assert redrawn_ids[ACTIONS_BLOCK] != posted_ids[ACTIONS_BLOCK]
        assert redrawn_ids[STATUS_BLOCK] != posted_ids[STATUS_BLOCK]

        # a refusal's ephemeral gets through a 429 (bob is a responder, not a commander)
        slack.rate_limit_next("chat.postEphemeral")
        r = await interact(http, click("UBOB", APPROVE, redrawn))
        assert r.status_code == 200
        e = await until(lambda: _now(next((x for x in slack.ephemerals if x["user"] == "UBOB"), None)), "ephemeral")
        assert "bob lacks the commander role" in e["text"]
        assert [c.error for c in slack.calls_to("chat.postEphemeral")] == ["ratelimited", None]

        # Approve on the redrawn message (its actions block has the new block_id): understood and
        # decided; the API's chat.update gets through a 429 and draws yet another revision
        before = len(slack.calls_to("chat.update"))
        slack.rate_limit_next("chat.update")
        payload = click("UALICE", APPROVE, redrawn)
        assert payload["actions"][0]["block_id"] == redrawn_ids[ACTIONS_BLOCK] != ACTIONS_BLOCK
        assert payload["actions"][0]["value"] == button_value(iid, first)
        r = await interact(http, payload)
        assert r.status_code == 200 and r.content == b"", r.text

        async def decided():
            a = await action(http, iid, first)
            return a if a["state"] != "proposed" else None

        a = await until(decided, "the approval")
        assert a["state"] in ("approved", "executed") and a["approved_by"] == "alice"
        done = await until(lambda: _ok_update(slack, refs[first].ts, before), f"{first}'s redraw")
        tries = slack.calls_to("chat.update")[before:]
        assert tries[0].error == "ratelimited" and done.at - tries[0].at >= 1
        now = slack.message(CHANNEL, refs[first].ts)
        assert now is not None
        now_ids = ids(now["blocks"])
        assert ACTIONS_BLOCK not in now_ids and now_ids[STATUS_BLOCK] not in (posted_ids[STATUS_BLOCK],
                                                                               redrawn_ids[STATUS_BLOCK])
        line = status_line(now["blocks"])
        assert line == "Approved by alice" or line.startswith("Executed"), line


async def test_the_click_is_acknowledged_before_any_rate_limit_wait(slack, monkeypatch):
    """Served as deployed (uvicorn): Slack's 200 leaves at once; the Slack calls after it wait
    out their 429s (here a refusal's chat.postEphemeral, rate limited twice: 2-4 s)."""
    import uvicorn

    from starters.api.app import ApiSettings, create_app
    from starters.ports import free_port

    monkeypatch.setenv("CODEBLUE_SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("CODEBLUE_SLACK_BOT_TOKEN", BOT)

    async def no_temporal():
        raise AssertionError("an unmapped user decides nothing: Temporal is never asked")

    cfg: CodeBlueConfig = api_config().model_copy(update={"slack": slack_cfg(slack)})
    app = create_app(no_temporal, ApiSettings(config=cfg))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve())
    try:
        await until(lambda: _now(server.started or task.done()), "uvicorn", timeout=10)
        assert server.started
        msg = {"ts": "1700000000.000001", "blocks": proposal_blocks(proposal())}
        slack.rate_limit_next("chat.postEphemeral", times=2)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as h:
            body = urlencode({"payload": json.dumps(click("UMALLORY", APPROVE, msg))})
            t0 = time.monotonic()
            r = await h.post("/slack/interactions", content=body, headers=signed(body))
            acked = time.monotonic() - t0
        assert r.status_code == 200 and acked < 1.0, acked  # Slack wants it within 3 s
        e = await until(lambda: _now(next(iter(slack.ephemerals), None)), "the ephemeral", timeout=15)
        assert "not mapped to a CodeBlue person" in e["text"]
        tries = slack.calls_to("chat.postEphemeral")
        assert [c.error for c in tries] == ["ratelimited", "ratelimited", None]
        assert tries[-1].at - t0 >= 2 > acked
    finally:
        server.should_exit = True
        await task


async def test_a_redraw_that_waited_out_a_429_draws_what_the_workflow_holds_by_then(slack):
    """The API's chat.update waited out a rate limit; meanwhile the workflow ran the action (and
    the worker drew "Executed"): the API's late "Approved" drawing must not stay. The router as
    the app builds it, its Temporal calls answered by a script."""
    from fastapi import FastAPI

    from domain.incident import ActionState, DecisionResult
    from starters.api.auth import TokenBook
    from starters.api.slack import slack_router

    acts = SlackActivities(slack_cfg(slack), BOT)
    posted = await post_proposal(acts, proposal())
    assert posted.ref is not None

    def report(state: ActionState, result: str | None = None) -> SimpleNamespace:
        act = SimpleNamespace(id="rollback", state=state, approved_by="alice", decided_by="alice",
                              rejection_reason=None, result=result, kind=SimpleNamespace(value="helm_rollback"),
                              reason="release 12 is crash-looping")
        return SimpleNamespace(actions=[act], severity=SimpleNamespace(value="P0"), commander="alice")

    async def temporal() -> Client:
        return cast(Client, object())  # never used: `bounded` answers for it

    async def bounded(work, principal=None):  # the workflow, scripted: decide -> approved; status
        name = work.cr_code.co_name  # -> approved until the API's first chat.update, executed after
        work.close()
        if name == "decide":
            return DecisionResult(action_id="rollback", state=ActionState.APPROVED, message="approved")
        if slack.calls_to("chat.update"):
            return report(ActionState.EXECUTED, "revision 12 -> 11")
        return report(ActionState.APPROVED)

    cfg: CodeBlueConfig = api_config().model_copy(update={"slack": slack_cfg(slack)})
    app = FastAPI()
    app.include_router(slack_router(cfg, TokenBook.from_config(cfg.api, env={}), temporal, bounded,
                                    env={cfg.slack.signing_secret_env: SECRET, cfg.slack.bot_token_env: BOT}))
    slack.calls.clear()
    slack.rate_limit_next("chat.update")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        r = await interact(http, click("UALICE", APPROVE, slack.message(CHANNEL, posted.ref.ts)))
        assert r.status_code == 200, r.text
    drawn = [(c.error, status_line(c.args["blocks"])) for c in slack.calls_to("chat.update")]
    assert drawn == [("ratelimited", "Approved by alice"), (None, "Approved by alice"),
                     (None, "Executed: revision 12 -&gt; 11")], drawn
    msg = slack.message(CHANNEL, posted.ref.ts)
    assert msg is not None and status_line(msg["blocks"]) == "Executed: revision 12 -&gt; 11"


async def _now(value):
    return value
