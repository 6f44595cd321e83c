"""A CodeBlue process collects nothing while it imports and, once its command runs, collects
again with what it imported frozen (worker.heap): a command never runs with the collector off."""

from __future__ import annotations

import gc

from starters.cli_common import run


def test_a_command_runs_with_the_collector_on_and_its_imports_out_of_its_sight():
    seen: list[tuple[bool, int]] = []

    async def command() -> None:
        seen.append((gc.isenabled(), gc.get_freeze_count()))

    gc.disable()  # as `codeblue` does while it imports (starters.cli.main)
    gc.unfreeze()  # whatever an earlier in-process command froze: this one must freeze its own
    try:
        run(command)
    finally:
        gc.enable()
    enabled, frozen = seen[0]
    assert enabled
    assert frozen > 10_000  # the product's modules, at least (a few hundred thousand objects)
