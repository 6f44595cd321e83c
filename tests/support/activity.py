"""Running an activity outside a worker, as Temporal would run a given attempt of it."""

from __future__ import annotations

import dataclasses

from temporalio.testing import ActivityEnvironment

from activities.slack import SlackActivities
from domain.slack import SlackPostResult, SlackProposalBatch, SlackProposalRequest


def attempt(n: int) -> ActivityEnvironment:
    """An environment whose activity sees itself as attempt `n` (its retry behaviour differs)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=n)
    return env


async def post_proposal(acts: SlackActivities, req: SlackProposalRequest, n: int = 1) -> SlackPostResult:
    """One proposal through the round's activity (`slack_post_proposals`), as attempt `n`."""
    out = await attempt(n).run(acts.slack_post_proposals, SlackProposalBatch(requests=[req]))
    (res,) = out.results
    return res
