"""A benchmark's worker, in a process of its own as deployed: its workflow tasks never share a
GIL with the load generator, and its RSS is the worker's alone (the capacity figure).
Activities are the in-memory world (sandbox.memory_world); the sandbox is the deployed
worker's (`worker.temporal.workflow_runner`).

`python -m bench.fake_worker ADDRESS NAMESPACE TASK_QUEUE`: prints `ready` once polling,
stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from bench.figures import without_hourly_limits
from sandbox.memory_world import World
from worker.identity import client_interceptors
from worker.temporal import data_converter, quiet_core_logs, workflow_runner
from workflows.incident_response import IncidentResponseWorkflow


async def serve(address: str, namespace: str, task_queue: str) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    client = await Client.connect(address, namespace=namespace, data_converter=data_converter(),
                                  interceptors=client_interceptors())  # verifies the API's proofs
    async with Worker(client, task_queue=task_queue, workflows=[IncidentResponseWorkflow], activities=without_hourly_limits(World()).activities(),
                      workflow_runner=workflow_runner(), max_cached_workflows=2000):
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    quiet_core_logs()
    asyncio.run(serve(*sys.argv[1:4]))
    os._exit(0)  # the SDK can abort at interpreter exit after a worker ran
