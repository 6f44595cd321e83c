"""Slack interactivity through the real interfaces: slack_sdk against the Web API stand-in
(sandbox.slack_api) over HTTP, the API's `POST /slack/interactions` over HTTP with Slack's v0
signatures, and real incident workflows on the dev server (fake world) that hold the proposals."""

from __future__ import annotations

import functools
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.exceptions import ApplicationError

from activities.http_client import tls_context
from activities.slack import SlackActivities
from domain.config import CodeBlueConfig, SlackConfig
from domain.slack import (
    ACTIONS_BLOCK,
    APPROVE,
    MAX_PROPOSALS_PER_POST,
    REASON_BLOCK,
    REASON_INPUT,
    REJECT,
    REJECT_MODAL,
    SlackMessageRef,
    SlackProposalBatch,
    SlackProposalRequest,
    SlackUpdateRequest,
    button_value,
    is_block,
    parse_private_metadata,
    proposal_blocks,
    proposal_from_metadata,
    proposal_metadata,
    proposal_text,
)
from sandbox.receiver import Receiver
from sandbox.slack_api import SlackApi
from starters.api.app import ApiSettings, create_app
from starters.ports import free_port
from tests.support.activity import attempt, post_proposal
from tests.support.api import api_config, api_on, auth
from tests.support.paths import ROOT
from tests.support.polling import until

BOT = "xoxb-test-" + "t" * 20
SECRET = "test-signing-secret-" + "s" * 12
CHANNEL = "C0INCIDENT"
USERS = {"UALICE": "alice", "UCAROL": "carol", "UBOB": "bob", "UEVE": "eve"}  # eve has no API token


def proposal(iid: str = "INC-1", aid: str = "rollback", **kw) -> SlackProposalRequest:
    base = dict(incident_id=iid, action_id=aid, kind="helm_rollback", reason="release 12 is crash-looping",
                severity="P0", commander="alice", idempotency_key=f"{iid}:{aid}:proposal")
    return SlackProposalRequest(**{**base, **kw})


def slack_cfg(api: SlackApi, **kw) -> SlackConfig:
    return SlackConfig(**{"api_url": api.api_url, "channel": CHANNEL, "users": USERS, **kw})


@pytest.fixture
async def slack():
    async with SlackApi(token=BOT, channels=(CHANNEL,)) as api:
        yield api


# ------------------------------------------------------------------ Block Kit (pure)

def test_blocks_show_buttons_only_while_proposed_and_the_outcome_after():
    p = proposal(recommended=True, recommendation="a deploy 12 minutes ago <and> errors since")
    blocks = proposal_blocks(p)
    section = blocks[0]["text"]["text"]
    assert section.splitlines()[0].endswith("*Recommended:* a deploy 12 minutes ago &lt;and&gt; errors since")
    assert "*rollback* (`helm_rollback`)" in section and "release 12 is crash-looping" in section
    (actions,) = [b for b in blocks if b["type"] == "actions"]
    assert is_block(actions["block_id"], ACTIONS_BLOCK)  # "<ACTIONS_BLOCK>.<revision>"
    approve, reject = actions["elements"]
    assert (approve["action_id"], approve["style"], approve["value"]) == (APPROVE, "primary", "INC-1|rollback")
    assert (reject["action_id"], reject["style"], reject["value"]) == (REJECT, "danger", button_value("INC-1", "rollback"))
    assert "Waiting for the IC (alice)" in json.dumps(blocks)

    for state, by, detail, line in [("approved", "alice", None, "Approved by alice"),
                                    ("rejected", "alice", "too risky", "Rejected by alice: too risky"),
                                    ("executed", None, "rolled back 12 -> 11", "Executed: rolled back 12 -&gt; 11"),
                                    ("superseded", None, "the world moved", "Not run (superseded): the world moved")]:
        b = proposal_blocks(p, state, by, detail)
        assert not [x for x in b if x["type"] == "actions"], state
        assert b[1]["elements"][0]["text"] == line
        assert "Recommended" in b[0]["text"]["text"]
    # a first approval under the two-person rule keeps the buttons and says so
    b = proposal_blocks(p, "proposed", "alice", "restore approved 1/2; needs a second person")
    assert [x for x in b if x["type"] == "actions"] and "1/2" in b[1]["elements"][0]["text"]

    assert proposal_text(p).startswith("[P0] INC-1: rollback (helm_rollback) proposed: release 12")
    assert proposal_text(p, "rejected", "alice", "too risky").endswith("Rejected by alice: too risky")
    # the fallback text follows Slack's escaping rule: no raw control characters
    odd = proposal_text(p.model_copy(update={"reason": "5xx ratio 0.35 (limit < 0.05) & <!channel>"}))
    assert "limit &lt; 0.05) &amp; &lt;!channel&gt;" in odd and "<" not in odd and ">" not in odd
    assert "Recommended" not in proposal_blocks(proposal())[0]["text"]["text"]
    assert proposal_from_metadata(proposal_metadata(p)) == p
    assert proposal_from_metadata({"event_type": "other", "event_payload": {}}) is None
    with pytest.raises(ValueError):
        parse_private_metadata("INC-1|rollback|C1")


# ------------------------------------------------------------------ activities on the stand-in

async def test_a_proposal_is_posted_once_and_a_retry_finds_it(slack):
    acts = SlackActivities(slack_cfg(slack), BOT)
    first = await post_proposal(acts, proposal())
    assert first.delivered and not first.skipped and first.ref and first.ref.channel == CHANNEL
    (msg,) = slack.messages[CHANNEL]
    assert msg["ts"] == first.ref.ts and msg["text"].startswith("[P0] INC-1: rollback")
    assert msg["metadata"]["event_type"] == "codeblue_proposal"
    assert msg["metadata"]["event_payload"]["idempotency_key"] == "INC-1:rollback:proposal"
    assert [b["type"] for b in msg["blocks"]] == ["section", "context", "actions"]

    # the worker died after Slack took the post: attempt 2 finds it instead of posting again
    again = await post_proposal(acts, proposal(), 2)
    assert again.delivered and again.ref == first.ref and "earlier attempt" in again.detail
    assert len(slack.messages[CHANNEL]) == 1 and len(slack.calls_to("chat.postMessage")) == 1
    (hist,) = slack.calls_to("conversations.history")
    assert hist.args["channel"] == CHANNEL and str(hist.args["include_all_metadata"]).lower() in ("1", "true")

    # a retry whose first attempt never reached Slack posts (once)
    other = await post_proposal(acts, proposal(aid="scale", kind="scale_up"), 3)
    assert other.delivered and other.ref is not None and other.ref.ts != first.ref.ts and len(slack.messages[CHANNEL]) == 2

    # updated in place: same message, the outcome, no buttons
    upd = await attempt(1).run(acts.slack_update_proposal, SlackUpdateRequest(
        proposal=proposal(), ref=first.ref, state="approved", by="alice"))
    assert upd.delivered and upd.ref == first.ref
    msg = slack.message(CHANNEL, first.ref.ts)
    assert [b["type"] for b in msg["blocks"]] == ["section", "context"] and "Approved by alice" in msg["text"]
    # a message outside the worker's channel is never touched
    away = await attempt(1).run(acts.slack_update_proposal, SlackUpdateRequest(
        proposal=proposal(), ref=SlackMessageRef(channel="C0ELSEWHERE", ts=first.ref.ts), state="approved"))
    assert away.skipped and not away.delivered and len(slack.calls_to("chat.update")) == 1


async def test_without_token_or_channel_posting_is_skipped(slack):
    r = await post_proposal(SlackActivities(slack_cfg(slack), None), proposal())
    assert r.skipped and not r.delivered and "CODEBLUE_SLACK_BOT_TOKEN" in r.detail
    r = await post_proposal(SlackActivities(slack_cfg(slack, channel=None), BOT), proposal())
    assert r.skipped and "slack.channel" in r.detail
    assert slack.calls == []


async def test_slack_failures_map_to_retryable_or_not(slack):
    """A refusal for good is that message's result (the round's other messages still go); what
    is worth retrying fails the activity, whose retry finds what was posted."""
    async def failure(acts: SlackActivities) -> ApplicationError:
        with pytest.raises(ApplicationError) as e:
            await post_proposal(acts, proposal())
        return e.value

    bad = await post_proposal(SlackActivities(slack_cfg(slack), "xoxb-wrong"), proposal())
    assert (bad.delivered, bad.detail) == (False, "slack chat.postMessage: invalid_auth")
    assert "xoxb-wrong" not in str(bad)
    gone = await post_proposal(SlackActivities(slack_cfg(slack, channel="C0GONE"), BOT), proposal())
    assert not gone.delivered and gone.ref is None and gone.detail.endswith("channel_not_found")

    slack.fail_next("chat.postMessage", "ratelimited")
    limited = await failure(SlackActivities(slack_cfg(slack), BOT))
    assert not limited.non_retryable and limited.type == "NotificationUnavailable"
    assert limited.next_retry_delay is not None and limited.next_retry_delay.total_seconds() == 1
    slack.fail_next("chat.postMessage", "internal_error")
    down = await failure(SlackActivities(slack_cfg(slack), BOT))
    assert not down.non_retryable and down.message.endswith("internal_error")
    unreachable = await failure(SlackActivities(SlackConfig(api_url=f"http://127.0.0.1:{free_port()}/api/",
                                                            channel=CHANNEL), BOT))
    assert not unreachable.non_retryable and "request failed" in unreachable.message
    assert slack.messages[CHANNEL] == []


async def test_a_round_of_proposals_is_one_activity_and_its_retry_posts_only_the_rest(slack):
    acts = SlackActivities(slack_cfg(slack), BOT)
    reqs = [proposal(aid=aid, kind=kind, idempotency_key=f"INC-1:{aid}:proposal")
            for aid, kind in (("rollback", "helm_rollback"), ("scale", "scale_up"), ("restart", "rollout_restart"))]
    # the first attempt posts two, then Slack fails (a 5xx): the activity fails, to be retried
    slack.fail_next("chat.postMessage", "internal_error", after=2)
    with pytest.raises(ApplicationError) as e:
        await attempt(1).run(acts.slack_post_proposals, SlackProposalBatch(requests=reqs))
    assert not e.value.non_retryable and len(slack.messages[CHANNEL]) == 2
    out = await attempt(2).run(acts.slack_post_proposals, SlackProposalBatch(requests=reqs))
    assert [r.delivered for r in out.results] == [True, True, True]
    assert ["earlier attempt" in r.detail for r in out.results] == [True, True, False]
    # one message per proposal, in the round's order, each once; one history read for the round
    texts = [m["text"] for m in slack.messages[CHANNEL]]
    assert [t.split(":")[1].split()[0] for t in texts] == ["rollback", "scale", "restart"], texts
    assert len(slack.calls_to("conversations.history")) == 1
    assert [r.ref.ts for r in out.results if r.ref] == [m["ts"] for m in slack.messages[CHANNEL]]
    # a round is bounded
    with pytest.raises(ValueError):
        SlackProposalBatch(requests=[reqs[0]] * (MAX_PROPOSALS_PER_POST + 1))


async def test_the_sandbox_receiver_serves_the_web_api_stand_in():
    async with Receiver(slack_token=BOT) as rx:
        web = AsyncWebClient(token=BOT, base_url=rx.slack_api_url)
        assert (await web.auth_test())["ok"]
        cfg = SlackConfig(api_url=rx.slack_api_url, channel=rx.slack_api.channel)
        r = await post_proposal(SlackActivities(cfg, BOT), proposal())
        assert r.delivered and r.ref is not None and cfg.channel is not None
        posted = rx.slack_api.message(cfg.channel, r.ref.ts)
        assert posted is not None and posted["metadata"]["event_type"] == "codeblue_proposal"
        with pytest.raises(SlackApiError) as e:
            await AsyncWebClient(token="xoxb-other", base_url=rx.slack_api_url).auth_test()
        assert e.value.response["error"] == "invalid_auth"
        # the webhook channels beside it are unchanged
        async with httpx.AsyncClient(verify=tls_context()) as h:
            assert (await h.post(rx.slack_url, json={"text": "hi"})).status_code == 200
        assert len(rx.effects("slack")) == 1 and rx.slack_api.calls_to("chat.postMessage")


# ------------------------------------------------------------------ the interaction endpoint

def signed(body: str, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None  # None only without a timestamp
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature}


def form(payload: dict) -> str:
    return urlencode({"payload": json.dumps(payload)})


def block_actions(user: str, button: str, iid: str, aid: str, msg: dict) -> dict:
    """A block_actions payload as Slack sends it for a click on a bot message's button."""
    return {
        "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"},
        "api_app_id": "A0CODEBLUE", "team": {"id": "T0SANDBOX"}, "trigger_id": f"trig-{uuid.uuid4().hex[:8]}",
        "container": {"type": "message", "message_ts": msg["ts"], "channel_id": CHANNEL, "is_ephemeral": False},
        "channel": {"id": CHANNEL, "name": "incident"}, "response_url": "https://hooks.slack.invalid/actions/x",
        "message": {k: v for k, v in msg.items() if k != "metadata"},  # Slack's echo; CodeBlue reads its own
        "actions": [{"type": "button", "action_id": button, "block_id": ACTIONS_BLOCK,
                     "value": button_value(iid, aid), "action_ts": f"{time.time():.6f}"}],
    }


def view_submission(user: str, view: dict, reason: str) -> dict:
    return {
        "type": "view_submission", "user": {"id": user}, "team": {"id": "T0SANDBOX"}, "api_app_id": "A0CODEBLUE",
        "view": {**view, "state": {"values": {REASON_BLOCK: {REASON_INPUT: {"type": "plain_text_input",
                                                                           "value": reason}}}}},
    }


async def interact(http: httpx.AsyncClient, payload: dict, **sign) -> httpx.Response:
    body = form(payload)
    return await http.post("/slack/interactions", content=body, headers=signed(body, **sign))


async def action(http: httpx.AsyncClient, iid: str, aid: str) -> dict:
    r = await http.get(f"/incidents/{iid}", headers=auth("vic"))
    assert r.status_code == 200, r.text
    return next(a for a in r.json()["actions"] if a["id"] == aid)


async def incident_with_messages(http: httpx.AsyncClient, world, slack: SlackApi) -> tuple[str, dict[str, dict]]:
    """A P0 whose IC is alice, and each proposal's message posted by the real activity."""
    iid = f"INC-SLK-{uuid.uuid4().hex[:6]}"
    r = await http.post("/incidents", headers=auth("bob"),
                        json={"title": "gateway down", "severity": "P0", "commander": "alice", "incident_id": iid})
    assert r.status_code == 201, r.text
    world.handles.append(iid)

    async def report():
        rep = (await http.get(f"/incidents/{iid}", headers=auth("vic"))).json()
        return rep if len(rep.get("actions") or []) >= 2 else None

    rep = await until(report, what="proposals", timeout=15)
    acts = SlackActivities(slack_cfg(slack), BOT)
    msgs: dict[str, dict] = {}
    for a in rep["actions"]:
        res = await post_proposal(acts, SlackProposalRequest(
            incident_id=iid, action_id=a["id"], kind=a["kind"], reason=a["reason"], severity=rep["severity"],
            commander=rep["commander"], idempotency_key=f"{iid}:{a['id']}:proposal"))
        assert res.ref is not None
        posted = slack.message(CHANNEL, res.ref.ts)
        assert posted is not None
        msgs[a["id"]] = posted
    slack.calls.clear()
    return iid, msgs


def slack_api_config(slack: SlackApi) -> CodeBlueConfig:
    return api_config().model_copy(update={"slack": slack_cfg(slack)})


@pytest.fixture
def slack_env(monkeypatch):
    monkeypatch.setenv("CODEBLUE_SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("CODEBLUE_SLACK_BOT_TOKEN", BOT)


async def test_an_ic_approves_from_slack_and_everyone_else_is_refused(dev_env, slack, slack_env):
    async with api_on(dev_env.client, slack_api_config(slack)) as (http, world, _):
        iid, msgs = await incident_with_messages(http, world, slack)
        aid = next(iter(msgs))
        msg = msgs[aid]
        approve = block_actions("UALICE", APPROVE, iid, aid, msg)

        # not Slack: a wrong secret, or a correct signature 6 minutes old -> 401, nothing happens
        r = await interact(http, approve, secret="not-the-secret")
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json"), r.text
        r = await interact(http, approve, at=time.time() - 360)
        assert r.status_code == 401, r.text
        body = form(approve)
        r = await http.post("/slack/interactions", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 401
        assert slack.calls == [] and (await action(http, iid, aid))["state"] == "proposed"

        # signed by Slack but not a CodeBlue commander: an ephemeral reply says why; nothing changes
        for user, why in [("UMALLORY", "not mapped to a CodeBlue person"), ("UEVE", "eve has no CodeBlue API token"),
                          ("UBOB", "bob lacks the commander role")]:
            r = await interact(http, block_actions(user, APPROVE, iid, aid, msg))
            assert r.status_code == 200, r.text
            e = await until(functools.partial(_ephemeral_for, slack, user), what=f"ephemeral to {user}", timeout=15)
            assert why in e["text"] and e["channel"] == CHANNEL, e
        # a commander who is not this incident's IC: the workflow's validator refuses, in its words
        r = await interact(http, block_actions("UCAROL", APPROVE, iid, aid, msg))
        assert r.status_code == 200
        e = await until(lambda: _ephemeral_for(slack, "UCAROL"), what="ephemeral to carol", timeout=15)
        assert "carol is not the incident commander (alice)" in e["text"], e
        assert (await action(http, iid, aid))["state"] == "proposed"
        assert slack.calls_to("chat.update") == [] and slack.views == []
        assert [b["type"] for b in slack.message(CHANNEL, msg["ts"])["blocks"]] == ["section", "context", "actions"]

        # the IC: decided through the workflow, as alice, and the message shows it without buttons
        r = await interact(http, approve)
        assert r.status_code == 200 and r.content == b"", r.text
        a = await until(lambda: _decided(http, iid, aid), what="the approval", timeout=15)
        assert a["state"] in ("approved", "executed") and (a["approved_by"], a["decided_by"]) == ("alice", "alice")
        await until(lambda: bool(slack.calls_to("chat.update")), what="chat.update", timeout=15)
        (upd,) = slack.calls_to("chat.update")
        assert (upd.args["channel"], upd.args["ts"]) == (CHANNEL, msg["ts"])
        now = slack.message(CHANNEL, msg["ts"])
        assert [b["type"] for b in now["blocks"]] == ["section", "context"]
        # the state the workflow holds when the message is redrawn: approved, or already run
        a = await action(http, iid, aid)
        line = now["blocks"][1]["elements"][0]["text"]
        assert line == "Approved by alice" or (a["state"] == "executed" and line.startswith("Executed")), (line, a)
        rep = (await http.get(f"/incidents/{iid}", headers=auth("vic"))).json()
        assert a["approved_by"] == "alice" and ("alice", "decision") in {(t["actor"], t["kind"]) for t in rep["timeline"]}

        # a second click on a stale message: the validator's answer, privately
        slack.ephemerals.clear()
        r = await interact(http, block_actions("UALICE", APPROVE, iid, aid, msg))
        e = await until(lambda: _ephemeral_for(slack, "UALICE"), what="ephemeral to alice", timeout=15)
        assert "already decided" in e["text"], e



async def test_reject_asks_for_a_reason_in_a_modal(dev_env, slack, slack_env):
    async with api_on(dev_env.client, slack_api_config(slack)) as (http, world, _):
        iid, msgs = await incident_with_messages(http, world, slack)
        aid = list(msgs)[-1]
        # a message without CodeBlue's metadata (as an older CodeBlue posted it): the outcome is
        # redrawn from the incident's own report
        plain = await AsyncWebClient(token=BOT, base_url=slack.api_url).chat_postMessage(
            channel=CHANNEL, text="proposal", blocks=msgs[aid]["blocks"])
        msg = slack.message(CHANNEL, plain["ts"])
        assert "metadata" not in msg
        slack.calls.clear()

        r = await interact(http, block_actions("UALICE", REJECT, iid, aid, msg))
        assert r.status_code == 200, r.text
        opened = await until(lambda: _last_view(slack), what="views.open", timeout=15)
        view = opened["view"]
        assert view["callback_id"] == REJECT_MODAL and view["private_metadata"] == f"{iid}|{aid}|{CHANNEL}|{msg['ts']}"
        (field,) = [b for b in view["blocks"] if b["type"] == "input"]
        assert field["block_id"] == REASON_BLOCK and field["element"]["type"] == "plain_text_input"
        assert (await action(http, iid, aid))["state"] == "proposed"  # opening the modal decides nothing

        # a bad signature on the submission changes nothing either
        r = await interact(http, view_submission("UALICE", view, "not now"), secret="nope")
        assert r.status_code == 401
        # refused in the modal itself, with the validator's reason
        r = await interact(http, view_submission("UCAROL", view, "not now"))
        assert r.status_code == 200 and r.json()["response_action"] == "errors", r.text
        assert "carol is not the incident commander (alice)" in r.json()["errors"][REASON_BLOCK]
        r = await interact(http, view_submission("UALICE", view, "   "))
        assert "a rejection needs a reason" in r.json()["errors"][REASON_BLOCK], r.text
        r = await interact(http, view_submission("UBOB", view, "not now"))
        assert "bob lacks the commander role" in r.json()["errors"][REASON_BLOCK], r.text
        assert (await action(http, iid, aid))["state"] == "proposed" and slack.calls_to("chat.update") == []

        r = await interact(http, view_submission("UALICE", view, "the rollback is enough"))
        assert r.status_code == 200 and r.content == b"", r.text
        a = await action(http, iid, aid)
        assert (a["state"], a["decided_by"], a["rejection_reason"]) == ("rejected", "alice", "the rollback is enough")
        await until(lambda: bool(slack.calls_to("chat.update")), what="chat.update", timeout=15)
        now = slack.message(CHANNEL, msg["ts"])
        assert [b["type"] for b in now["blocks"]] == ["section", "context"]
        assert now["blocks"][1]["elements"][0]["text"] == "Rejected by alice: the rollback is enough"
        assert f"*{aid}*" in now["blocks"][0]["text"]["text"] and "Rejected by alice" in now["text"]


async def test_a_late_click_on_a_withdrawn_proposal_redraws_what_codeblue_did(dev_env, slack, slack_env):
    """A stale message (the proposal was superseded after the rollback): the click decides
    nothing, and the message shows the withdrawal with its reason, never "by" the clicker."""
    async with api_on(dev_env.client, slack_api_config(slack)) as (http, world, _):
        iid, msgs = await incident_with_messages(http, world, slack)
        r = await http.post(f"/incidents/{iid}/decisions", headers=auth("alice"),
                            json={"action_id": "rollback", "approve": True})
        assert r.status_code == 200, r.text
        late = next(a for a in msgs if a != "rollback")
        await until(lambda: _async_state(http, iid, late, "superseded"), what=f"{late} superseded", timeout=15)

        r = await interact(http, block_actions("UALICE", REJECT, iid, late, msgs[late]))
        assert r.status_code == 200, r.text
        view = (await until(lambda: _last_view(slack), what="views.open", timeout=15))["view"]
        r = await interact(http, view_submission("UALICE", view, "no longer needed"))
        assert r.status_code == 200 and r.content == b"", r.text
        await until(lambda: bool(slack.calls_to("chat.update")), what="chat.update", timeout=15)
        line = slack.message(CHANNEL, msgs[late]["ts"])["blocks"][1]["elements"][0]["text"]
        assert line.startswith("Not run (superseded): ") and "alice" not in line, line
        assert (await action(http, iid, late))["state"] == "superseded"


async def _async_state(http: httpx.AsyncClient, iid: str, aid: str, state: str):
    return (await action(http, iid, aid))["state"] == state


async def test_without_a_signing_secret_interactions_are_unavailable(monkeypatch):
    monkeypatch.delenv("CODEBLUE_SLACK_SIGNING_SECRET", raising=False)

    async def no_temporal():
        raise AssertionError("not reached")

    app = create_app(no_temporal, ApiSettings(config=api_config()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        body = form({"type": "block_actions"})
        r = await http.post("/slack/interactions", content=body, headers=signed(body))
        assert r.status_code == 503 and "CODEBLUE_SLACK_SIGNING_SECRET" in r.json()["detail"], r.text
        assert "/slack/interactions" not in (await http.get("/openapi.json")).json()["paths"]


def _last_view(slack: SlackApi) -> Any:
    """The modal opened last, if any."""
    return slack.views[-1] if slack.views else None


def _ephemeral_for(slack: SlackApi, user: str):
    return next((e for e in reversed(slack.ephemerals) if e["user"] == user), None)


async def _decided(http: httpx.AsyncClient, iid: str, aid: str):
    a = await action(http, iid, aid)
    return a if a["state"] != "proposed" else None


# ------------------------------------------------------------------ the drill, through Slack

def test_drill_via_slack_decides_by_signed_interactions():
    """`codeblue drill --via slack`: the IC approves the recommended rollback and rejects the rest
    by clicking in the sandbox's incident channel; the clicks reach the API's real
    /slack/interactions, signed v0 with the signing secret, and the stand-in records the updates."""

    from tests.support.cli import codeblue

    r = codeblue("drill", "--via", "slack", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["via"] == "slack" and rep["status"] == "resolved" and rep["verified"] is True
    actions = {a["id"]: a for a in rep["actions"]}
    rollback = actions["rollback"]
    assert rollback["recommended"] and rollback["state"] == "executed"
    assert (rollback["approved_by"], rollback["decided_by"]) == ("drill-ic", "drill-ic")
    sent = rep["slack_interactions"]
    assert all(i["signed"] == "v0" and i["status"] == 200 and i["user"] == "U0DRILLIC" for i in sent), sent
    click = sent[0]
    assert (click["type"], click["action"], click["action_id"]) == ("block_actions", "approve", "rollback")
    # the stand-in recorded chat.update on the clicked message: approved, then executed
    assert click["chat_updates"] and click["chat_updates"][0] == "Approved by drill-ic", click
    assert click["shown"].startswith("Executed: revision 12 -> 11"), click
    # what was still proposed, the IC rejected through the modal: block_actions, then view_submission
    rejected = [a for a in rep["actions"] if a["state"] == "rejected"]
    assert rejected, rep["actions"]
    for a in rejected:
        assert (a["decided_by"], a["rejection_reason"]) == ("drill-ic", "drill: only rollback is needed")
        steps = [(i["type"], i["action"]) for i in sent if i["action_id"] == a["id"]]
        assert steps == [("block_actions", "reject"), ("view_submission", "reject")], (a["id"], steps)
        shown = next(i["shown"] for i in sent if i["action_id"] == a["id"])
        assert shown == "Rejected by drill-ic: drill: only rollback is needed"
    assert all(a["state"] in ("executed", "rejected", "superseded") for a in rep["actions"])
    assert ("drill-ic", "Approved rollback (helm_rollback)") in {(t["actor"], t["event"]) for t in rep["timeline"]}
    assert "DRILL PASSED" in r.stderr and "via slack:" in r.stderr
    assert "drill --via slack" in (ROOT / "README.md").read_text()


def test_drill_via_slack_only_for_the_incident_drivers_scenarios():
    from tests.support.cli import codeblue

    r = codeblue("drill", "db-outage", "--via", "slack", timeout=60)
    assert r.returncode == 1 and "--via slack plays the incident commander of bad-deploy" in r.stderr, r.stderr
    r = codeblue("drill", "--via", "pigeon", timeout=60)
    assert r.returncode == 1 and "--via pigeon: expected temporal or slack" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
