"""Slack interactivity: one incident-channel message per proposal, with Approve / Reject
buttons, posted and updated through Slack's Web API (chat.postMessage / chat.update); the
IC's clicks come back to the API (`POST /slack/interactions`). Shared by the workflow (which
posts and updates) and the API (which verifies, decides and updates in place)."""

from __future__ import annotations

import hashlib
import json
import re

from pydantic import BaseModel, Field

# Block Kit action IDs of the two buttons; each button's `value` is "<incident_id>|<action_id>"
APPROVE, REJECT = "approve", "reject"
REJECT_MODAL = "codeblue_reject"  # views.open callback_id of the reason modal


def button_value(incident_id: str, action_id: str) -> str:
    return f"{incident_id}|{action_id}"


def parse_button_value(value: str) -> tuple[str, str]:
    incident_id, sep, action_id = value.partition("|")
    if not sep or not incident_id or not action_id:
        raise ValueError(f"not an <incident_id>|<action_id> value: {value!r}")
    return incident_id, action_id


class SlackMessageRef(BaseModel):
    channel: str
    ts: str


class SlackProposalRequest(BaseModel):
    """A proposal as the incident channel sees it (CodeBlue's own words: no title, no PHI)."""

    incident_id: str
    action_id: str
    kind: str
    reason: str
    severity: str
    commander: str | None = None
    rank: int = 0
    recommended: bool = False
    recommendation: str | None = None  # the one-line why, when recommended
    idempotency_key: str  # a retried post finds its earlier message instead of posting twice


class SlackPostResult(BaseModel):
    delivered: bool
    skipped: bool = False  # no bot token or channel configured
    detail: str = ""
    ref: SlackMessageRef | None = None


# The proposals of one round go in one activity (one message each, in rank order): a round
# of five used to cost five activities and five workflow tasks, one after the other.
MAX_PROPOSALS_PER_POST = 50


class SlackProposalBatch(BaseModel):
    requests: list[SlackProposalRequest] = Field(min_length=1, max_length=MAX_PROPOSALS_PER_POST)


class SlackBatchResult(BaseModel):
    """One result per request, in its order."""

    results: list[SlackPostResult]


class SlackShown(BaseModel):
    """What the workflow last put in an action's message (workflow state)."""

    ref: SlackMessageRef | None = None  # None: the post failed; not tried again
    view: list[str | None] = []  # [state, by, detail]


class SlackUpdateRequest(BaseModel):
    """The proposal's message, updated in place with its outcome (buttons removed once decided)."""

    proposal: SlackProposalRequest
    ref: SlackMessageRef
    state: str  # proposed | approved | rejected | executed | failed | compensated | superseded
    by: str | None = None
    detail: str | None = None


# ------------------------------------------------------------------ the incident channel
# Slack's rule for a channel name (conversations.create): lowercase letters, digits, '-' and
# '_', at most 80 characters. CodeBlue's is the prefix (slack.channel_prefix) and the incident ID.
CHANNEL_NAME_MAX = 80
CHANNEL_NAME_RE = re.compile(r"[a-z0-9_-]{1,80}")  # fullmatch
TOPIC_MAX = 250  # Slack's limit on a channel topic (conversations.setTopic answers too_long past it)


def channel_name(incident_id: str, prefix: str = "inc-") -> str:
    """The incident's channel name: `<prefix><incident ID>`, lowercased, any character Slack
    refuses ('.' in an incident ID) as '-', at most 80 characters. A pure function of its
    arguments: every attempt (and every worker) asks for the same name, so a retry finds the
    channel an earlier attempt created (`name_taken`) instead of making a second one."""
    raw = (prefix + incident_id).lower()
    name = re.sub(r"[^a-z0-9_-]", "-", raw)[:CHANNEL_NAME_MAX]
    if not CHANNEL_NAME_RE.fullmatch(name):  # only with an empty prefix and ID: never an incident's
        raise ValueError(f"no Slack channel name from {incident_id!r}")
    return name


def channel_topic(incident_id: str, severity: str, service: str, owners: str | None = None) -> str:
    """The channel's topic: public words only (the incident ID, its severity and service, and the
    service's own channel from the catalog; never its title, which may name a patient), Slack's
    control characters escaped, within 250."""
    team = f" · owners {owners}" if owners else ""
    return _clip(mrkdwn_escape(f"[{severity}] {incident_id} · {service}{team} · CodeBlue incident"), TOPIC_MAX)


class SlackInvitee(BaseModel):
    """Someone the incident channel should have: a CodeBlue name (a principal of `slack.users`)
    and why (IC, approver, on-call). The worker maps the name to Slack user IDs."""

    name: str
    role: str


class SlackChannelRequest(BaseModel):
    """Open the incident's channel. Only public words travel: no title, no summary."""

    incident_id: str
    severity: str
    service: str
    owners_channel: str | None = None  # the service's own channel (the catalog's slack_channel)
    people: list[SlackInvitee] = []
    # the incident in the Temporal UI (its timeline, report and proposals): the channel's bookmark
    link: str | None = None
    link_title: str = Field(default="Incident in Temporal", min_length=1, max_length=100)


class SlackChannelRef(BaseModel):
    id: str  # C...
    name: str


class SlackChannelResult(BaseModel):
    opened: bool  # the incident has its channel (created now, or found from an earlier attempt)
    skipped: bool = False  # no bot token on the worker: the webhook message instead
    reused: bool = False  # an earlier attempt had created it (name_taken, then found)
    channel: SlackChannelRef | None = None
    invited: list[str] = []  # "alice (IC)": in the channel now (invited, or already there)
    no_slack_id: list[str] = []  # "bob (approver)": no Slack user ID in slack.users; not invited
    not_invited: list[str] = []  # "carol (approver): user_not_found": Slack refused the invite
    topic: str = ""
    bookmarked: bool = False  # the Temporal UI link is a bookmark of the channel
    problems: list[str] = []  # a later step Slack refused for good (the channel stays)
    detail: str = ""


def channel_summary(r: SlackChannelResult) -> str:
    """One timeline line for the result: the channel, who is in it and who is not, and why."""
    if r.channel is None:
        return r.detail
    parts = [f"#{r.channel.name} ({r.channel.id}) " + ("found (an earlier attempt created it)" if r.reused else "created")]
    parts.append("invited " + (", ".join(r.invited) if r.invited else "nobody"))
    if r.no_slack_id:
        parts.append("no Slack ID, not invited: " + ", ".join(r.no_slack_id))
    if r.not_invited:
        parts.append("Slack refused: " + ", ".join(r.not_invited))
    parts.append("topic set" if r.topic else "no topic")
    parts.append("bookmarked the incident's Temporal UI link" if r.bookmarked else "no bookmark")
    if r.problems:
        parts.append("problems: " + "; ".join(r.problems))
    return "; ".join(parts)


# ------------------------------------------------------------------ Block Kit (pure functions)
EVENT_TYPE = "codeblue_proposal"  # the message metadata's event_type on every proposal message
# A proposal message's block_ids are these prefixes plus ".<revision>" (block_id(), below):
# Slack keeps a block's client state per block_id, so each drawing of a message that differs
# gets fresh ones. Readers match by prefix (is_block), never by equality.
PROPOSAL_BLOCK, STATUS_BLOCK, ACTIONS_BLOCK = "codeblue_proposal", "codeblue_status", "codeblue_decide"
# the reject modal's one input: opened anew by each click (views.open, never views.update), so
# its block_id stays as is; its reader matches by prefix all the same (reason_value)
REASON_BLOCK, REASON_INPUT = "reason", "reason_input"
REVISION_SEP, REVISION_LEN = ".", 10  # block_id = "<prefix>.<10 hex digits>"
SECTION_MAX = 3000  # Slack's limit on a section's text
TEXT_MAX = 4000  # what CodeBlue puts in a message's fallback text (Slack truncates at 40,000)

_STATE_WORDS = {
    "approved": "Approved",
    "rejected": "Rejected",
    "executed": "Executed",
    "failed": "Failed",
    "compensated": "Compensated",
    "superseded": "Not run (superseded)",
}


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def block_id(prefix: str, revision: str) -> str:
    return f"{prefix}{REVISION_SEP}{revision}" if revision else prefix


def is_block(value: object, prefix: str) -> bool:
    """Whether a block_id is `prefix`'s, in any revision (or none: messages drawn before
    revisions, or a modal's input)."""
    return isinstance(value, str) and (value == prefix or value.startswith(prefix + REVISION_SEP))


def blocks_revision(blocks: list[dict]) -> str:
    """A short hash of what the blocks show (their block_ids left out): a pure function of the
    content, so a drawing that differs gets new block_ids, the same drawing (a retried
    chat.update, the API and the worker drawing the same state) the same ones; deterministic,
    so workflow code may call it (no clock, no randomness)."""
    bare = [{k: v for k, v in b.items() if k != "block_id"} for b in blocks]
    canonical = json.dumps(bare, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LEN]


def with_revision(blocks: list[dict]) -> list[dict]:
    """The blocks with each block_id suffixed by the drawing's revision (blocks_revision)."""
    rev = blocks_revision(blocks)
    return [{**b, "block_id": block_id(b["block_id"], rev)} if "block_id" in b else b for b in blocks]


def find_block(blocks: object, prefix: str) -> dict | None:
    """The first block whose block_id is `prefix`'s (any revision)."""
    for b in blocks if isinstance(blocks, list) else []:
        if isinstance(b, dict) and is_block(b.get("block_id"), prefix):
            return b
    return None


def outcome_line(state: str, by: str | None = None, detail: str | None = None) -> str:
    """'Approved by alice', 'Rejected by alice: reason', 'Executed: detail', or, while proposed,
    who it waits for (and a first approval's '1/2' detail)."""
    if state == "proposed":
        return detail or "Waiting for a decision"
    word = _STATE_WORDS.get(state, state.capitalize())
    line = f"{word} by {by}" if by else word
    return f"{line}: {detail}" if detail else line


def proposal_text(req: SlackProposalRequest, state: str = "proposed", by: str | None = None,
                  detail: str | None = None) -> str:
    """The message's fallback text (notifications, screen readers): plain, one line, with
    Slack's control characters escaped ("5xx ratio 0.35 (limit < 0.05)" shows as written)."""
    head = f"[{req.severity}] {req.incident_id}: {req.action_id} ({req.kind})"
    if state == "proposed":
        rec = f" Recommended: {req.recommendation}." if req.recommended and req.recommendation else (
            " Recommended." if req.recommended else "")
        tail = f" {detail}." if detail else ""
        return mrkdwn_escape(_clip(f"{head} proposed: {req.reason}.{rec}{tail}", TEXT_MAX))
    return mrkdwn_escape(_clip(f"{head}: {outcome_line(state, by, detail)}", TEXT_MAX))


def proposal_blocks(req: SlackProposalRequest, state: str = "proposed", by: str | None = None,
                    detail: str | None = None) -> list[dict]:
    """The proposal as Block Kit: a section (recommendation first, the action, its reason), a
    status line, and Approve / Reject buttons only while it is still proposed. Every block_id
    carries this drawing's revision (with_revision): a redraw that changes anything gets new ones."""
    lines = []
    if req.recommended:
        why = mrkdwn_escape(req.recommendation) if req.recommendation else "ranked first"
        lines.append(f":star: *Recommended:* {why}")
    lines.append(f"*{mrkdwn_escape(req.action_id)}* (`{mrkdwn_escape(req.kind)}`) · "
                 f"{mrkdwn_escape(req.severity)} {mrkdwn_escape(req.incident_id)}")
    lines.append(mrkdwn_escape(req.reason))
    blocks: list[dict] = [
        {"type": "section", "block_id": PROPOSAL_BLOCK,
         "text": {"type": "mrkdwn", "text": _clip("\n".join(lines), SECTION_MAX)}},
    ]
    status = outcome_line(state, by, detail)
    if state == "proposed" and not detail and req.commander:
        status = f"Waiting for the IC ({req.commander})"
    blocks.append({"type": "context", "block_id": STATUS_BLOCK,
                   "elements": [{"type": "mrkdwn", "text": _clip(mrkdwn_escape(status), SECTION_MAX)}]})
    if state == "proposed":
        value = button_value(req.incident_id, req.action_id)
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK, "elements": [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Approve"},
             "confirm": {"title": {"type": "plain_text", "text": "Approve this change?"},
                         "text": {"type": "mrkdwn", "text": _clip(
                             f"{mrkdwn_escape(req.action_id)} ({mrkdwn_escape(req.kind)}) on "
                             f"{mrkdwn_escape(req.incident_id)} changes production.", 300)},
                         "confirm": {"type": "plain_text", "text": "Approve"},
                         "deny": {"type": "plain_text", "text": "Cancel"}}},
            {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Reject"}},
        ]})
    return with_revision(blocks)


def proposal_metadata(req: SlackProposalRequest) -> dict:
    """Message metadata: a retried post finds its message by the idempotency key, and a click
    rebuilds the proposal from what CodeBlue itself posted. Flat values only."""
    return {"event_type": EVENT_TYPE, "event_payload": req.model_dump(mode="json", exclude_none=True)}


def proposal_from_metadata(metadata: object) -> SlackProposalRequest | None:
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return None
    try:
        return SlackProposalRequest.model_validate(metadata.get("event_payload") or {})
    except ValueError:
        return None


def reject_modal(incident_id: str, action_id: str, channel: str, ts: str) -> dict:
    """views.open's view: one reason input; private_metadata names the message to update."""
    return {
        "type": "modal",
        "callback_id": REJECT_MODAL,
        "private_metadata": f"{incident_id}|{action_id}|{channel}|{ts}",
        "title": {"type": "plain_text", "text": "Reject"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(
                f"Reject *{mrkdwn_escape(action_id)}* on {mrkdwn_escape(incident_id)}", SECTION_MAX)}},
            {"type": "input", "block_id": REASON_BLOCK,
             "label": {"type": "plain_text", "text": "Why not?"},
             "element": {"type": "plain_text_input", "action_id": REASON_INPUT, "multiline": True,
                         "min_length": 1, "max_length": 2000}},
        ],
    }


def reason_value(view: object) -> tuple[str, str]:
    """A submitted reject modal's reason and the block_id its input has (for the `errors`
    answer): found by prefix, so a suffixed input block_id would be read as well."""
    state = view.get("state") if isinstance(view, dict) else None
    values = state.get("values") if isinstance(state, dict) else None
    values = values if isinstance(values, dict) else {}
    key = next((k for k in values if is_block(k, REASON_BLOCK)), None)
    if key is None:  # not submitted with a value: name the input the view itself has
        field = find_block(view.get("blocks") if isinstance(view, dict) else None, REASON_BLOCK)
        return "", str(field["block_id"]) if field else REASON_BLOCK
    entry = values[key].get(REASON_INPUT) if isinstance(values[key], dict) else None
    value = entry.get("value") if isinstance(entry, dict) else None
    return str(value or "").strip(), key


def parse_private_metadata(value: str) -> tuple[str, str, str, str]:
    """'<incident_id>|<action_id>|<channel>|<ts>' -> its four parts (ValueError otherwise)."""
    parts = value.split("|")
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"not an <incident_id>|<action_id>|<channel>|<ts> value: {value!r}")
    return parts[0], parts[1], parts[2], parts[3]
