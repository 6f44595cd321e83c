"""The baseline for the overhead figure: the P0 drill's activity shape with no CodeBlue logic."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow


@workflow.defn
class BaselineWorkflow:
    """The P0 drill's shape with nothing else: same activities, same parallelism, no CodeBlue logic."""

    @workflow.run
    async def run(self, n: int) -> None:
        opts: dict[str, Any] = {"start_to_close_timeout": timedelta(seconds=30)}
        call = lambda name: workflow.execute_activity(name, "x", **opts)  # noqa: E731
        await call("noop")  # worker config
        await call("noop")  # page
        await asyncio.gather(call("noop"), call("noop"), call("noop"))  # diagnostics
        await asyncio.gather(call("noop"), call("noop"), call("noop"), call("noop"))  # assessment
        for _ in range(3):  # communication
            await call("noop")
        await workflow.wait_condition(lambda: self.go)  # the IC's decisions
        await call("noop")  # the rollback's lease (the blast-radius guard)
        await call("noop")  # rollback
        await call("noop")  # its lease let go of
        for _ in range(2):  # verification
            await call("noop")
        for _ in range(3):  # closing communication
            await call("noop")

    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@activity.defn(name="noop")
async def noop(_: str) -> None:
    return None


