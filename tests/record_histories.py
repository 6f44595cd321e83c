"""Records tests/histories/<scenario><suffix>.json: `python -m tests.record_histories [SUFFIX]`.

Record new histories under a new suffix (e.g. `_signed`) when workflows change, and keep the
old files: each generation of committed histories is a set of runs that must keep replaying.

Run it only when a workflow change is meant to be incompatible with incidents already in
flight (and then version the workflow instead, if any are); the committed histories are
what keeps older runs replayable.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from sandbox.memory_world import World
from tests.conftest import signing_interceptors  # also sets the tests' operator key
from tests.test_replay import SCENARIOS, run_scenario
from worker.temporal import data_converter, register_search_attributes

OUT = Path(__file__).parent / "histories"


async def main(suffix: str = "") -> None:
    for name, kwargs in SCENARIOS.items():
        # a server per scenario, as in the tests: one scenario's skipped clock never wedges the next
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=data_converter(), interceptors=signing_interceptors(),
            test_server_existing_path=shutil.which("temporal-test-server"),
        )
        try:
            await register_search_attributes(env.client)
            history = await run_scenario(env, World(**kwargs["world"]), **kwargs["run"])
            (OUT / f"{name}{suffix}.json").write_text(history.to_json())
            print("wrote", OUT / f"{name}{suffix}.json")
        finally:
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else ""))
