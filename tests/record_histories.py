"""Regenerates tests/histories/*.json: `python -m tests.record_histories`.

Run it only when a workflow change is meant to be incompatible with incidents already in
flight (and then version the workflow instead, if any are); the committed histories are
what keeps older runs replayable.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.fakes import World
from tests.test_replay import SCENARIOS, run_scenario
from worker.temporal import data_converter, register_search_attributes

OUT = Path(__file__).parent / "histories"


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(), test_server_existing_path=shutil.which("temporal-test-server")
    )
    try:
        await register_search_attributes(env.client)
        for name, kwargs in SCENARIOS.items():
            history = await run_scenario(env, World(**kwargs["world"]), **kwargs["run"])
            (OUT / f"{name}.json").write_text(history.to_json())
            print("wrote", OUT / f"{name}.json")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
