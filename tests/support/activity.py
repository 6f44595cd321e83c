"""Running an activity outside a worker, as Temporal would run a given attempt of it."""

from __future__ import annotations

import dataclasses

from temporalio.testing import ActivityEnvironment


def attempt(n: int) -> ActivityEnvironment:
    """An environment whose activity sees itself as attempt `n` (its retry behaviour differs)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=n)
    return env
