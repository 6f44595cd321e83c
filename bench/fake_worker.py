"""A benchmark's worker, in a process of its own as deployed: its workflow tasks never share a
GIL with the load generator, and its RSS is the worker's alone (the capacity and scale figures).
Activities are the in-memory world (sandbox.memory_world); the sandbox is the deployed
worker's (`worker.temporal.workflow_runner`).

`python -m bench.fake_worker ADDRESS NAMESPACE TASK_QUEUE [--cache N] [--stamp]`: prints `ready`
once polling and, with --stamp, `rollback WORKFLOW_ID MONOTONIC` when an incident's rollback
activity starts (CLOCK_MONOTONIC is one clock for every process on the machine, so the bench
can time a decision it sent against it); stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from bench.figures import without_hourly_limits
from sandbox.memory_world import World
from worker.heap import settle_heap
from worker.identity import client_interceptors
from worker.temporal import data_converter, quiet_core_logs, workflow_runner
from workflows.incident_response import IncidentResponseWorkflow

DEFAULT_CACHE = 1000  # the SDK's max_cached_workflows when none is given, as `codeblue worker` runs


def stamped(acts: list) -> list:
    """The world's activities, its helm_rollback replaced by one that says when it started."""

    @activity.defn(name="helm_rollback")
    async def helm_rollback(req: Any) -> Any:  # unannotated: the worker hands over the request as sent (a dict)
        from domain.cluster import HelmRollbackRequest, HelmRollbackResult

        print(f"rollback {activity.info().workflow_id} {time.monotonic()}", flush=True)
        r = HelmRollbackRequest.model_validate(req) if isinstance(req, dict) else req
        return HelmRollbackResult(release=r.release, from_revision=r.from_revision, to_revision=r.to_revision,
                                  new_revision=r.from_revision + 1)

    return [a for a in acts if getattr(a, "__temporal_activity_definition").name != "helm_rollback"] + [helm_rollback]


async def serve(a: argparse.Namespace) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    client = await Client.connect(a.address, namespace=a.namespace, data_converter=data_converter(),
                                  interceptors=client_interceptors())  # verifies the API's proofs
    acts = without_hourly_limits(World()).activities()
    async with Worker(client, task_queue=a.task_queue, workflows=[IncidentResponseWorkflow],
                      activities=stamped(acts) if a.stamp else acts, workflow_runner=workflow_runner(),
                      max_cached_workflows=a.cache or DEFAULT_CACHE):
        settle_heap(young_threshold=None)  # as `codeblue worker` once started
        print("ready", flush=True)
        await stop.wait()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.fake_worker")
    ap.add_argument("address")
    ap.add_argument("namespace")
    ap.add_argument("task_queue")
    ap.add_argument("--cache", type=int, default=2000, metavar="N",
                    help="max_cached_workflows (0: the SDK's default, as `codeblue worker` runs)")
    ap.add_argument("--stamp", action="store_true", help="print when each rollback activity starts")
    a = ap.parse_args(argv)
    return a


if __name__ == "__main__":
    quiet_core_logs()
    asyncio.run(serve(parse()))
    os._exit(0)  # the SDK can abort at interpreter exit after a worker ran
