"""The Slack Web API stand-in's channel methods answer as Slack does: its name rules and
`name_taken`, invites, topics, bookmarks and listing, with Slack's error codes, over HTTP through
slack_sdk."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_api import BOT_USER, SlackApi

BOT = "xoxb-test-" + "s" * 20


@pytest.fixture
async def web():
    async with SlackApi(token=BOT, channels=("C0EXISTING",), users=("UALICE", "UBOB")) as api:
        yield api, AsyncWebClient(token=BOT, base_url=api.api_url)


async def error(call) -> str:
    with pytest.raises(SlackApiError) as e:
        await call
    return str(e.value.response["error"])


async def test_create_enforces_slacks_name_rules(web):
    api, client = web
    assert await error(client.api_call("conversations.create", params={})) == "invalid_name_required"
    assert await error(client.conversations_create(name="")) == "no_channel"
    assert await error(client.conversations_create(name="Inc-1")) == "invalid_name_specials"
    assert await error(client.conversations_create(name="inc 1")) == "invalid_name_specials"
    assert await error(client.conversations_create(name="inc.1")) == "invalid_name_specials"
    assert await error(client.conversations_create(name="a" * 81)) == "invalid_name_maxlength"
    assert await error(client.conversations_create(name="--_")) == "invalid_name_punctuation"
    made = await client.conversations_create(name="a" * 80, is_private=True)
    ch = made["channel"]
    assert ch["name"] == "a" * 80 and ch["is_private"] is True and ch["creator"] == BOT_USER and ch["is_member"]
    assert await error(client.conversations_create(name="a" * 80)) == "name_taken"
    api.add_channel("old-incident", archived=True)
    assert await error(client.conversations_create(name="old-incident")) == "name_taken"  # archived keep names
    assert [c.error for c in api.calls_to("conversations.create")][-1] == "name_taken"


async def test_invite_topic_and_bookmarks_validate_their_arguments(web):
    api, client = web
    cid = (await client.conversations_create(name="inc-1"))["channel"]["id"]
    assert await error(client.conversations_invite(channel=cid, users="")) == "no_user"
    assert await error(client.conversations_invite(channel="C0NOPE", users="UALICE")) == "channel_not_found"
    assert await error(client.conversations_invite(channel=cid, users="UNOBODY")) == "user_not_found"
    assert await error(client.conversations_invite(channel=cid, users=BOT_USER)) == "cant_invite_self"
    # several users, one bad, no force: nobody is added
    assert await error(client.conversations_invite(channel=cid, users=["UALICE", "UNOBODY"])) == "user_not_found"
    assert api.channels[cid]["members"] == [BOT_USER]
    assert (await client.conversations_invite(channel=cid, users="UALICE"))["ok"]
    assert await error(client.conversations_invite(channel=cid, users="UALICE")) == "already_in_channel"
    forced = await client.conversations_invite(channel=cid, users=["UALICE", "UBOB"], force=True)
    assert forced["errors"] == [{"user": "UALICE", "ok": False, "error": "already_in_channel"}]
    assert api.channels[cid]["members"] == [BOT_USER, "UALICE", "UBOB"]

    assert await error(client.conversations_setTopic(channel=cid, topic="t" * 251)) == "too_long"
    assert (await client.conversations_setTopic(channel=cid, topic="[P0] INC-1"))["channel"]["topic"]["value"] == "[P0] INC-1"
    other = api.add_channel("someone-elses")  # the bot is not in it
    assert await error(client.conversations_setTopic(channel=other["id"], topic="x")) == "not_in_channel"
    assert await error(client.conversations_invite(channel=other["id"], users="UALICE")) == "not_in_channel"

    assert await error(client.bookmarks_add(channel_id=cid, title="t", type="message")) == "invalid_bookmark_type"
    assert await error(client.bookmarks_add(channel_id=cid, title="t", type="link", link="ftp://x")) == "invalid_link"
    assert await error(client.bookmarks_add(channel_id=cid, title="t", type="link")) == "invalid_link"
    assert await error(client.bookmarks_add(channel_id="C0NOPE", title="t", type="link",
                                            link="https://x")) == "channel_not_found"
    mark = (await client.bookmarks_add(channel_id=cid, title="UI", type="link", link="https://ui.example/x"))["bookmark"]
    assert (await client.bookmarks_list(channel_id=cid))["bookmarks"] == [mark] == api.bookmarks[cid]


async def test_list_pages_and_hides_private_channels_the_bot_is_not_in(web):
    api, client = web
    for n in range(3):
        await client.conversations_create(name=f"inc-{n}")
    api.add_channel("secret", is_private=True)  # someone's private channel
    api.add_channel("archived", archived=True)
    names, cursor = [], None
    while True:
        page = await client.conversations_list(types="public_channel,private_channel", limit=2, cursor=cursor)
        assert len(page["channels"]) <= 2
        names += [c["name"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"] or None
        if not cursor:
            break
    assert names == ["c0existing", "inc-0", "inc-1", "inc-2", "archived"]
    live = await client.conversations_list(exclude_archived=True, limit=1000)
    assert "archived" not in [c["name"] for c in live["channels"]]
    assert await error(client.conversations_list(cursor="bogus")) == "invalid_cursor"
    assert await error(client.conversations_list(types="channels")) == "invalid_types"
    api.reset()  # what tests created goes; the workspace's own channel stays
    assert [c["name"] for c in api.channels.values()] == ["c0existing"]
