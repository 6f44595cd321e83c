"""The incident's own Slack channel (`SlackActivities.slack_open_channel`): slack_sdk against the
Web API stand-in (sandbox.slack_api) over real HTTP. Created with a valid name, the IC and the
responders with a Slack ID invited, a topic of public words only, the Temporal UI bookmarked;
idempotent under Temporal's retries; Slack's refusals retryable or not as they should be."""

from __future__ import annotations

import json

import pytest
from temporalio.exceptions import ApplicationError

from activities.slack import SlackActivities
from domain.config import SlackConfig
from domain.slack import (
    CHANNEL_NAME_RE,
    SlackChannelRequest,
    SlackInvitee,
    channel_name,
    channel_topic,
)
from sandbox.slack_api import BOT_USER, SlackApi
from tests.support.activity import attempt

BOT = "xoxb-test-" + "c" * 20
CHANNEL = "C0PROPOSALS"  # slack.channel: the proposals' channel, untouched here
USERS = {"UALICE": "alice", "UCAROL": "carol", "UCAROL2": "carol", "UDAVE": "dave"}
LINK = "https://temporal.example/namespaces/default/workflows/INC-7.db"
TITLE = "Jane Roe's chart shows wrong allergies"  # what an incident title may say: never in Slack


def request(iid: str = "INC-7.db", **kw) -> SlackChannelRequest:
    base = dict(incident_id=iid, severity="P0", service="api-gateway", link=LINK, link_title=f"{iid} in the Temporal UI",
                people=[SlackInvitee(name="alice", role="IC"), SlackInvitee(name="carol", role="approver"),
                        SlackInvitee(name="bob", role="approver"), SlackInvitee(name="+1-555-0123", role="on-call")])
    return SlackChannelRequest(**{**base, **kw})


def acts(api: SlackApi, token: str | None = BOT, **kw) -> SlackActivities:
    return SlackActivities(SlackConfig(**{"api_url": api.api_url, "channel": CHANNEL, "users": USERS, **kw}), token,
                           ui_base_url="https://temporal.example/")


@pytest.fixture
async def slack():
    async with SlackApi(token=BOT, channels=(CHANNEL,)) as api:
        yield api


# ------------------------------------------------------------------ names and topic (pure)

def test_channel_names_follow_slacks_rules():
    assert channel_name("INC-7.db") == "inc-inc-7-db"
    assert channel_name("INC-7", "") == "inc-7"
    longest = channel_name("A" * 64, "incident-codebl_")  # the longest prefix and ID there are
    assert len(longest) <= 80 and CHANNEL_NAME_RE.fullmatch(longest)
    for iid in ("INC-1", "x", "Deploy_2024.11.05-A", "9" * 64):
        name = channel_name(iid)
        assert CHANNEL_NAME_RE.fullmatch(name) and name == channel_name(iid), iid  # valid and stable
    with pytest.raises(ValueError):
        channel_name("", "")


def test_the_topic_holds_public_words_only():
    assert "title" not in SlackChannelRequest.model_fields  # the request cannot carry the title
    assert channel_topic("INC-7", "P1", "api-gateway") == "[P1] INC-7 · api-gateway · CodeBlue incident"
    assert channel_topic("INC-7", "P1", "<api>&gw") == "[P1] INC-7 · &lt;api&gt;&amp;gw · CodeBlue incident"
    assert len(channel_topic("INC-7", "P1", "s" * 400)) <= 250


# ------------------------------------------------------------------ the activity on the stand-in

async def test_a_channel_is_created_with_its_people_topic_and_bookmark(slack):
    r = await attempt(1).run(acts(slack).slack_open_channel, request())
    assert r.opened and not r.reused and not r.skipped and r.channel is not None
    assert r.channel.name == "inc-inc-7-db" and CHANNEL_NAME_RE.fullmatch(r.channel.name)
    ch = slack.channels[r.channel.id]
    assert ch["name"] == r.channel.name and ch["creator"] == BOT_USER and ch["is_private"] is False
    # the IC and the approver with Slack IDs (both of carol's), the bot itself
    assert sorted(ch["members"]) == sorted([BOT_USER, "UALICE", "UCAROL", "UCAROL2"])
    assert r.invited == ["alice (IC)", "carol (approver)"]
    assert r.no_slack_id == ["bob (approver)", "+1-555-0123 (on-call)"] and r.not_invited == []
    assert "no Slack ID, not invited: bob (approver), +1-555-0123 (on-call)" in r.detail
    # the topic: the incident ID, severity and service; nothing of the title anywhere in Slack
    assert ch["topic"]["value"] == r.topic == "[P0] INC-7.db · api-gateway · CodeBlue incident"
    sent = json.dumps([c.args for c in slack.calls])
    assert "Jane" not in sent and "allergies" not in sent and TITLE not in sent
    # the Temporal UI link, bookmarked
    (mark,) = slack.bookmarks[r.channel.id]
    assert (mark["type"], mark["link"], mark["title"]) == ("link", LINK, "INC-7.db in the Temporal UI")
    assert r.bookmarked and r.problems == []
    # one invite per Slack user ID; the proposals' channel untouched
    assert [c.args["users"] for c in slack.calls_to("conversations.invite")] == ["UALICE", "UCAROL", "UCAROL2"]
    assert slack.messages[CHANNEL] == []


async def test_private_channels_when_configured(slack):
    r = await attempt(1).run(acts(slack, private_channels=True, channel_prefix="sev-").slack_open_channel,
                             request("INC-8"))
    assert r.channel is not None and r.channel.name == "sev-inc-8"
    assert slack.channels[r.channel.id]["is_private"] is True


async def test_a_retry_after_name_taken_reuses_the_channel(slack):
    a = acts(slack)
    # attempt 1 created the channel and invited, then Slack failed the topic (retryable)
    slack.fail_next("conversations.setTopic", "internal_error")
    with pytest.raises(ApplicationError) as e:
        await attempt(1).run(a.slack_open_channel, request())
    assert not e.value.non_retryable
    (ch,) = [c for c in slack.channels.values() if c["name"] == "inc-inc-7-db"]
    assert slack.bookmarks[ch["id"]] == [] and ch["topic"]["value"] == ""

    # attempt 2: name_taken, found (this bot created it), finished; the invites already in are fine
    r = await attempt(2).run(a.slack_open_channel, request())
    assert r.opened and r.reused and r.channel is not None and r.channel.id == ch["id"]
    assert r.invited == ["alice (IC)", "carol (approver)"] and "found (an earlier attempt created it)" in r.detail
    assert ch["topic"]["value"] == r.topic and len(slack.bookmarks[ch["id"]]) == 1
    assert [c.error for c in slack.calls_to("conversations.create")] == [None, "name_taken"]

    # a worker that died after Slack did everything: the next attempt changes nothing
    again = await attempt(3).run(a.slack_open_channel, request())
    assert again.reused and again.channel == r.channel and again.bookmarked
    assert len(slack.bookmarks[ch["id"]]) == 1 and len([c for c in slack.channels.values()
                                                         if c["name"] == "inc-inc-7-db"]) == 1
    assert sorted(ch["members"]) == sorted([BOT_USER, "UALICE", "UCAROL", "UCAROL2"])


async def test_a_name_someone_else_took_is_not_taken_over(slack):
    slack.add_channel("inc-inc-9", creator="U0HUMAN", members=("U0HUMAN",))
    with pytest.raises(ApplicationError) as e:
        await attempt(1).run(acts(slack).slack_open_channel, request("INC-9"))
    assert e.value.non_retryable and e.value.type == "NotificationRejected"
    assert "not created by CodeBlue's bot" in e.value.message
    assert slack.calls_to("conversations.invite") == [] and slack.calls_to("bookmarks.add") == []

    ours = slack.add_channel("inc-inc-10", creator=BOT_USER, bot_member=True, archived=True)
    with pytest.raises(ApplicationError) as e:
        await attempt(2).run(acts(slack).slack_open_channel, request("INC-10"))
    assert e.value.non_retryable and "archived" in e.value.message and ours["members"] == [BOT_USER]


async def test_a_person_slack_refuses_is_named_and_the_others_invited():
    async with SlackApi(token=BOT, channels=(CHANNEL,), users=("UALICE", "UCAROL", "UCAROL2")) as slack:
        req = request(people=[SlackInvitee(name="dave", role="approver"), SlackInvitee(name="alice", role="IC"),
                              SlackInvitee(name="alice", role="approver")])
        r = await attempt(1).run(acts(slack).slack_open_channel, req)
        assert r.opened and r.invited == ["alice (IC)"]  # each person once, as first named
        assert r.not_invited == ["dave (approver): user_not_found"] and "Slack refused: dave (approver)" in r.detail
        assert r.channel is not None and "UDAVE" not in slack.channels[r.channel.id]["members"]


async def test_slack_failures_map_to_retryable_or_not(slack):
    with pytest.raises(ApplicationError) as e:
        await attempt(1).run(acts(slack, token="xoxb-wrong").slack_open_channel, request())
    bad = e.value
    assert (bad.type, bad.non_retryable, bad.message) == ("NotificationRejected", True,
                                                          "slack conversations.create: invalid_auth")
    assert "xoxb-wrong" not in str(bad) and slack.channel_named("inc-inc-7-db") is None

    slack.rate_limit_next("conversations.create", retry_after=7)
    with pytest.raises(ApplicationError) as e:
        await attempt(1).run(acts(slack).slack_open_channel, request())
    assert not e.value.non_retryable and e.value.type == "NotificationUnavailable"
    assert e.value.next_retry_delay is not None and e.value.next_retry_delay.total_seconds() == 7
    assert slack.channel_named("inc-inc-7-db") is None

    # a later step refused for good: named, and the channel (its ID) still reaches the incident
    slack.fail_next("bookmarks.add", "missing_scope")
    r = await attempt(2).run(acts(slack).slack_open_channel, request())
    assert r.opened and r.channel is not None and not r.bookmarked and r.topic
    assert r.problems == ["slack bookmarks.add: missing_scope"] and "missing_scope" in r.detail


async def test_without_a_bot_token_nothing_is_asked(slack):
    r = await attempt(1).run(acts(slack, token=None).slack_open_channel, request())
    assert r.skipped and not r.opened and r.channel is None and "CODEBLUE_SLACK_BOT_TOKEN" in r.detail
    assert slack.calls == []


async def test_a_forged_request_invites_only_mapped_people_and_bookmarks_no_foreign_link(slack):
    """Whatever a request asks, the worker's config decides: people are invited only by the
    Slack IDs its slack.users maps (a Slack ID as a name maps to nobody), the bookmark only
    under its ui.base_url."""
    req = request("INC-11", link="https://phish.example/namespaces/default/workflows/INC-11",
                  people=[SlackInvitee(name="U0MALLORY", role="IC"), SlackInvitee(name="alice", role="approver")])
    r = await attempt(1).run(acts(slack).slack_open_channel, req)
    assert r.opened and r.channel is not None and not r.bookmarked and slack.bookmarks[r.channel.id] == []
    assert r.problems == ["bookmark refused: the link is not under the worker's ui.base_url"]
    assert r.invited == ["alice (approver)"] and r.no_slack_id == ["U0MALLORY (IC)"]
    assert sorted(slack.channels[r.channel.id]["members"]) == sorted([BOT_USER, "UALICE"])
    # a worker without a Temporal UI bookmarks nothing
    plain = SlackActivities(SlackConfig(api_url=slack.api_url, users=USERS), BOT)
    r = await attempt(1).run(plain.slack_open_channel, request("INC-12"))
    assert r.opened and not r.bookmarked and r.channel is not None and slack.bookmarks[r.channel.id] == []
